-- A database written by slack-hitl at commit e5384928b303aa98233d4bd7adb21a059651f918 (the store split into a package, six
-- migrations, before m007): hitl demo --simulate 3 --answers 120, hitl import of a JSONL with
-- ids, meta and labels, hitl retrain, then hitl serve with signed clicks by U0ANA and U0RAJ (U0RAJ
-- after U0ANA had decided the item) and POST /api/items with a callback_url. Cut down to ten
-- items (rows of other items, runs and models deleted, then VACUUM) and written with iterdump.
BEGIN TRANSACTION;
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
INSERT INTO "_sqlite_migrations" VALUES(1,'hitl','m001_core','2026-12-07 03:58:37.641739+00:00');
INSERT INTO "_sqlite_migrations" VALUES(2,'hitl','m002_runs_deliveries','2026-12-07 03:58:37.645098+00:00');
INSERT INTO "_sqlite_migrations" VALUES(3,'hitl','m003_post_redraw','2026-12-07 03:58:37.649311+00:00');
INSERT INTO "_sqlite_migrations" VALUES(4,'hitl','m004_locks','2026-12-07 03:58:37.652784+00:00');
INSERT INTO "_sqlite_migrations" VALUES(5,'hitl','m005_label_decided_by','2026-12-07 03:58:37.656989+00:00');
INSERT INTO "_sqlite_migrations" VALUES(6,'hitl','m006_margin','2026-12-07 03:58:37.662385+00:00');
CREATE TABLE answers (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            user_id TEXT NOT NULL,
            label TEXT,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            dedupe_key TEXT NOT NULL UNIQUE
        );
INSERT INTO "answers" VALUES(88,'demo-0003','U0SIMKIM','account','select','2026-12-07T03:58:50.342+00:00','demo-0003:U0SIMKIM:account:1796615930.000175');
INSERT INTO "answers" VALUES(116,'demo-0010','U0SIMSAM','billing','button','2026-12-07T03:58:54.728+00:00','demo-0010:U0SIMSAM:billing:1796615934.000231');
INSERT INTO "answers" VALUES(121,'ext-000','import','billing','import','2026-12-07T03:59:33.888+00:00','import:ext-000');
INSERT INTO "answers" VALUES(122,'ext-001','import','bug','import','2026-12-07T03:59:33.888+00:00','import:ext-001');
INSERT INTO "answers" VALUES(133,'demo-0438','U0ANA','praise','button','2026-12-07T04:10:05.873+00:00','demo-0438:U0ANA:praise:1700000001.000200');
INSERT INTO "answers" VALUES(134,'demo-0438','U0RAJ','praise','button','2026-12-07T04:10:06.984+00:00','demo-0438:U0RAJ:praise:1700000001.000200');
CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            url TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            last_error TEXT,
            created_at TEXT NOT NULL
        );
CREATE TABLE items (
            id TEXT PRIMARY KEY,
            text TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            source TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'new',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            model_version INTEGER,
            predicted_label TEXT,
            confidence REAL,
            ranked TEXT,
            callback_url TEXT
        , margin REAL);
INSERT INTO "items" VALUES('demo-0438','Just wanted to say the new the calendar is lovely, thanks!','{"channel": "email"}','demo','resolved','2026-12-07T03:58:37.664+00:00','2026-12-07T04:10:05.873+00:00',8,'praise',3.79445433616638183593e-01,'[["praise", 0.3794454336166382], ["bug", 0.378458172082901], ["billing", 0.07877238094806671], ["how_to", 0.061649858951568604], ["feature_request", 0.054262492805719376]]',NULL,9.87261533737182617187e-04);
INSERT INTO "items" VALUES('demo-0388','Urgent: How do I import reports from a CSV file? Any help appreciated.','{"channel": "chat"}','demo','auto','2026-12-07T03:58:37.664+00:00','2026-12-07T04:01:19.620+00:00',8,'how_to',8.01535069942474365234e-01,'[["how_to", 0.8015350699424744], ["feature_request", 0.08557680994272232], ["billing", 0.06011568754911423], ["account", 0.02375425584614277], ["bug", 0.021014587953686714]]',NULL,0.715958259999752);
INSERT INTO "items" VALUES('demo-0152','The Jira sync stopped working after the update','{"channel": "chat"}','demo','posted','2026-12-07T03:58:37.664+00:00','2026-12-07T03:58:53.971+00:00',5,'bug',3.54253739118576049804e-01,'[["bug", 0.35425373911857605], ["praise", 0.18210862576961517], ["account", 0.11921948939561844], ["billing", 0.11783818155527115], ["how_to", 0.11418002843856812]]',NULL,1.72145113348960876464e-01);
INSERT INTO "items" VALUES('demo-0003','I signed up with Google but now want a password login','{"channel": "chat"}','demo','resolved','2026-12-07T03:58:37.664+00:00','2026-12-07T03:58:50.342+00:00',4,'praise',2.0166473090648651123e-01,'[["praise", 0.2016647309064865], ["bug", 0.19982905685901642], ["billing", 0.15733377635478973], ["feature_request", 0.1553088277578354], ["how_to", 0.14763954281806946]]',NULL,1.83567404747009277343e-03);
INSERT INTO "items" VALUES('demo-0010','Hey! Is it possible to archive old invoices instead of deleting them? Thank you.','{"channel": "chat"}','demo','resolved','2026-12-07T03:58:37.664+00:00','2026-12-07T03:58:54.728+00:00',5,'how_to',2.34539672732353210449e-01,'[["how_to", 0.2345396727323532], ["praise", 0.2261476069688797], ["billing", 0.1536296159029007], ["feature_request", 0.14041851460933685], ["bug", 0.1302863508462906]]',NULL,0.00839206576347351);
INSERT INTO "items" VALUES('ext-000','ticket 0: refund invoice charge card 140891','{"team": "eu", "prio": 0}','import','resolved','2026-12-07T03:59:33.888+00:00','2026-12-07T03:59:33.888+00:00',NULL,NULL,NULL,NULL,NULL,NULL);
INSERT INTO "items" VALUES('ext-001','ticket 1: crash error broken fails 596853','{"team": "us", "prio": 1}','import','resolved','2026-12-07T03:59:33.888+00:00','2026-12-07T03:59:33.888+00:00',NULL,NULL,NULL,NULL,NULL,NULL);
INSERT INTO "items" VALUES('ext-020','ticket 20: login password email reset 876363','{"team": "eu", "prio": 2}','import','auto','2026-12-07T03:59:33.888+00:00','2026-12-07T04:01:19.620+00:00',8,'account',9.33604061603546142578e-01,'[["account", 0.9336040616035461], ["praise", 0.018286677077412605], ["billing", 0.012590235099196434], ["bug", 0.012194707989692688], ["feature_request", 0.012043965980410576]]',NULL,9.15317384526133537292e-01);
INSERT INTO "items" VALUES('api-e538492-0','api item e538492 0 refund my card','{"src": "api"}','api','queued','2026-12-07T04:01:39.478+00:00','2026-12-07T04:01:39.530+00:00',8,'billing',5.9821802377700805664e-01,'[["billing", 0.5982180237770081], ["account", 0.142267644405365], ["how_to", 0.0945599302649498], ["praise", 0.06892069429159164], ["bug", 0.05538549646735191]]','http://127.0.0.1:54689/hook',4.55950379371643066406e-01);
INSERT INTO "items" VALUES('tb9d74d1dc7b7901b','the app crashes on start','{}','api','queued','2026-12-07T04:01:39.567+00:00','2026-12-07T04:01:39.579+00:00',8,'bug',0.703433632850647,'[["bug", 0.703433632850647], ["praise", 0.08228910714387894], ["account", 0.07609246671199799], ["billing", 0.05764450132846832], ["feature_request", 0.04546428099274635]]',NULL,0.621144525706768);
CREATE TABLE labels (
            item_id TEXT PRIMARY KEY REFERENCES items(id),
            label TEXT NOT NULL,
            votes INTEGER NOT NULL,
            agreement REAL NOT NULL,
            annotators TEXT NOT NULL DEFAULT '[]',
            resolved_at TEXT NOT NULL
        , decided_by INTEGER);
INSERT INTO "labels" VALUES('demo-0003','account',1,1.0,'["U0SIMKIM"]','2026-12-07T03:58:50.342+00:00',88);
INSERT INTO "labels" VALUES('demo-0010','billing',1,1.0,'["U0SIMSAM"]','2026-12-07T03:58:54.728+00:00',116);
INSERT INTO "labels" VALUES('ext-000','billing',1,1.0,'["import"]','2026-12-07T03:59:33.888+00:00',NULL);
INSERT INTO "labels" VALUES('ext-001','bug',1,1.0,'["import"]','2026-12-07T03:59:33.888+00:00',NULL);
INSERT INTO "labels" VALUES('demo-0438','praise',1,1.0,'["U0ANA"]','2026-12-07T04:10:05.873+00:00',133);
CREATE TABLE locks (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            acquired_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
CREATE TABLE models (
            version INTEGER PRIMARY KEY,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            n_train INTEGER NOT NULL,
            label_set TEXT NOT NULL,
            metrics TEXT NOT NULL DEFAULT '{}',
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            reason TEXT
        );
CREATE TABLE posts (
            id INTEGER PRIMARY KEY,
            item_id TEXT NOT NULL REFERENCES items(id),
            channel TEXT NOT NULL,
            ts TEXT NOT NULL,
            reason TEXT NOT NULL,
            model_version INTEGER,
            predicted_label TEXT,
            confidence REAL,
            posted_at TEXT NOT NULL,
            closed_at TEXT, redraw_seq INTEGER NOT NULL DEFAULT 0, drawn_seq INTEGER NOT NULL DEFAULT 0,
            UNIQUE (channel, ts)
        );
INSERT INTO "posts" VALUES(89,'demo-0003','C0QUESTIONS','1700000000.026100','uncertain',4,'praise',2.0166473090648651123e-01,'2026-12-07T03:58:50.107+00:00','2026-12-07T03:58:50.342+00:00',1,1);
INSERT INTO "posts" VALUES(110,'demo-0152','C0QUESTIONS','1700000000.032500','audit',5,'bug',3.54253739118576049804e-01,'2026-12-07T03:58:53.971+00:00',NULL,0,0);
INSERT INTO "posts" VALUES(119,'demo-0010','C0QUESTIONS','1700000000.035200','uncertain',5,'how_to',2.34539672732353210449e-01,'2026-12-07T03:58:54.629+00:00','2026-12-07T03:58:54.728+00:00',1,1);
CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            triggered_by TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE INDEX answers_item ON answers(item_id, user_id);
CREATE INDEX posts_item ON posts(item_id);
CREATE UNIQUE INDEX models_one_champion ON models(status) WHERE status = 'champion';
CREATE INDEX runs_kind ON runs(kind, started_at);
CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX items_status_confidence ON items(status, confidence);
CREATE INDEX posts_open ON posts(channel, closed_at);
CREATE INDEX items_status_margin ON items(status, margin);
COMMIT;
