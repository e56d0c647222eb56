"""Stats, accuracy and retrain reports, as Slack mrkdwn or plain terminal text, and the
accuracy chart. The Slack commands and the CLI both show them (``plain`` for a terminal).

The numbers people should trust most come first: live accuracy on audit posts (random picks,
so unbiased) with its Wilson 95% interval. Agreement on uncertain posts is shown too, labelled
as biased low, since those are the items the model found hardest.
"""

from __future__ import annotations

import asyncio
import io
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.config import Settings
from bot.learning import quality
from bot.learning.stopping import StopStatus, Streak, stop_status
from bot.store import Store
from bot.store.core import LABEL_RETIRED
from bot.store.gold import GOLD_WAITING, WAITING
from bot.words import NAME_CLOSE, NAME_OPEN, count, escape, for_terminal, name, person
from bot.words import marked as _marked
from model import ModelError, ModelRegistry, wilson_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bot.learning.retrain import Outcome  # as a type: importing it brings aiohttp
    from bot.learning.scoring_worker import ScoringWorker
    from model import ModelVersion


def period_starts(settings: Settings, now: datetime) -> tuple[str, str]:
    """Start of today and of this week (Monday), in HITL_TIMEZONE, as UTC ISO strings."""
    zone = ZoneInfo(settings.timezone)
    now = now.astimezone(zone)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = today - timedelta(days=today.weekday())
    return _iso(today), _iso(week)


def local_date(stamp: str, timezone: str) -> str:
    """The day (``2026-12-06``) of a stored time (UTC ISO) in ``timezone`` (HITL_TIMEZONE),
    the day the team lived it, as ``period_starts`` counts days; a stamp that is no ISO time
    is shown as it starts (its first 10 characters)."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp[:10]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment.astimezone(ZoneInfo(timezone)).date().isoformat()


def _iso(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).isoformat(timespec="milliseconds")


def labels_and_skips(labels: int, skips: int, joint: str = ", ") -> str:
    """``2 labels, 1 skip``; a part that is 0 is left out (``1 skip``), unless both are."""
    parts = [(labels, "label"), (skips, "skip")]
    return joint.join(count(n, word) for n, word in parts if n or not (labels or skips))


def _answers_line(period: str, store: Store, since: str) -> str:
    """`*Answers today:* 4 (2 labels, 2 skips): <@U1> 2 labels + 1 skip, <@U2> 1 skip`: every
    answer counted once a person and item, split into labels (votes) and skips; the people
    (``labels_by_user`` keeps 50) with most labels first, then how many others answered
    ("and 10 others"; nothing when the 50 are everyone)."""
    labels, skips = store.labels_since(since)
    if not labels + skips:
        return f"*Answers {period}:* 0"
    rows = store.labels_by_user(since)
    others = store.people_since(since) - len(rows) if len(rows) == 50 else 0
    more = f" and {count(others, 'other')}" if others > 0 else ""
    people = ", ".join(f"{person(u)} {labels_and_skips(n, s, ' + ')}" for u, n, s in rows)
    return (
        f"*Answers {period}:* {labels + skips:,} ({labels_and_skips(labels, skips)}): "
        f"{people}{more}"
    )


def stats_text(store: Store, settings: Settings, now: datetime) -> str:
    """Answers today and this week by person (labels and skips), the items by state and, with
    votes, the agreement (mrkdwn: `/hitl stats`; ``plain`` of it is `hitl stats`).

    An item decided with a label since retired is not counted resolved but apart, waiting in
    /hitl review for a label in force (``Store.count_items_shown``), as the producer API and
    `hitl export` treat it; the line still adds up to every item stored."""
    today, week = period_starts(settings, now)
    counts = store.count_items_shown()
    lines = [
        _answers_line("today", store, today),
        _answers_line("this week", store, week),
        f"*Items:* {_waiting(counts, store.gold_held_back())} · {counts['posted']:,} posted · "
        f"{counts['resolved']:,} resolved{_label_retired(counts[LABEL_RETIRED])} · "
        f"{counts['auto']:,} decided by the model · {counts['skipped']:,} skipped",
    ]
    if settings.votes > 1:
        agreement, n = store.mean_agreement()
        lines.append(
            f"*Votes for the winner:* {agreement:.0%} on {count(n, 'item')} decided by vote"
            if agreement is not None
            else "*Votes for the winner:* no item decided by vote yet"
        )
    return "\n".join(lines)


def _label_retired(n: int) -> str:
    """The decided items whose label was retired (``LABEL_RETIRED``), after the resolved
    ones; nothing while there are none."""
    if not n:
        return ""
    one = n == 1
    return (
        f" · {n:,} waiting in /hitl review for a label in force"
        f" ({'its' if one else 'their'} label was retired)"
    )


def _waiting(counts: dict[str, int], held: int = 0) -> str:
    """The items not asked yet (``WAITING``, as ``Store.waiting_count`` counts them), gold
    questions among them (``GOLD_WAITING``: every gold item not asked yet, waiting to be
    mixed into the posts), and apart the gold questions held back while their gold label is
    retired (``held``: ``Store.gold_held_back``, not asked until it is added back, as the
    retire said), so that the line adds up to every item stored."""
    gold = counts.get(GOLD_WAITING, 0) - held
    waiting = f"{sum(counts.get(status, 0) for status in WAITING) - held:,} waiting"
    waiting += f" ({gold:,} of them gold questions)" if gold else ""
    if held:
        one = held == 1
        waiting += (
            f" · {held:,} gold question{'' if one else 's'} held back while"
            f" {'its' if one else 'their'} gold label is retired"
        )
    return waiting


def stats_sections(
    store: Store, settings: Settings, now: datetime, *, admin: bool
) -> tuple[str, list[str]]:
    """`/hitl stats`' counts (``stats_text``) and its quality sections (``quality.measure``,
    ``quality.quality_sections``) read on ``store``: every vote. ``admin``: with each person's
    accuracy on gold and the Dawid–Skene estimates, which are not computed for someone who is
    not shown them (seconds of EM on a large team)."""
    measured = quality.measure(store, settings, estimates=admin)
    return stats_text(store, settings, now), quality.quality_sections(measured, gold=admin)


def stats_apart(
    path: Path, file_id: tuple[int, int] | None, settings: Settings, now: datetime, admin: bool
) -> tuple[str, list[str]]:
    """``stats_sections`` in another process, on the file ``Store.apart_file`` named
    (``Store.open_apart``: refused once it is not that file)."""
    with Store.open_apart(path, file_id) as store:
        return stats_sections(store, settings, now, admin=admin)


async def stats_off_loop(
    served: Store,
    settings: Settings,
    now: datetime,
    *,
    admin: bool,
    worker: ScoringWorker | None = None,
) -> tuple[str, list[str]]:
    """``stats_sections`` off the event loop, on a connection of its own: in ``worker`` (the
    walks' scoring child under `hitl serve`) while it runs (it is warmed as a model arrives),
    else in a worker thread (``Store.apart``). The counts of the day's and week's answers grow
    with them, and the quality reads every vote: in a worker thread, its numpy and sorting
    (people's agreement, Dawid–Skene's EM) held the GIL, and so the event loop, 80–177 ms at a
    million items (benchmarks/RESULTS.md, "Commands at a million items"); from the child only
    the sections' text crosses back."""
    if worker is not None and worker.running:
        path, file_id = served.apart_file()  # a lost or replaced file: refused here, in a line
        return await worker.call(None, stats_apart, path, file_id, settings, now, admin)

    def run() -> tuple[str, list[str]]:
        with served.apart() as store:
            return stats_sections(store, settings, now, admin=admin)

    return await asyncio.to_thread(run)


@dataclass(frozen=True)
class VersionPoint:
    version: int
    status: str
    n_train: int
    accuracy: float | None
    macro_f1: float | None
    created_at: str
    old_folds: bool = False  # scored with folds that split a text's repeats (``OLD_FOLDS``)


@dataclass(frozen=True)
class AccuracyReport:
    version: int
    created_at: str
    age_days: float
    n_train: int
    cv_accuracy: float | None
    cv_macro_f1: float | None
    n_splits: int
    audit_n: int
    audit_correct: int
    audit_interval: tuple[float, float]
    uncertain_n: int
    uncertain_correct: int
    weakest: list[tuple[str, float, int]]
    trend: list[VersionPoint] = field(default_factory=list)
    stopping: StopStatus | None = None  # when to stop: the signal and the extrapolation
    damaged: int | None = None  # the champion whose metadata is damaged; this is its fallback
    # the live figures count questions the working model refreshed from this champion asked
    # since it became champion, besides its own (False: it asked none, or they are not counted)
    refreshes_counted: bool = False
    # people answered questions in Slack (not only imported labels): CV_NOTE applies
    people_answered: bool = True
    # the weakest classes whose name is no longer in the label set in force, as ``weakest``
    # names them: what became of it since the model was trained (``class_notes``)
    weakest_notes: dict[str, str] = field(default_factory=dict)
    # the classes left out of ``weakest`` whose F1, as shown (two decimals), is the third's:
    # as weak as those named (many rare classes of a large label set score 0.00)
    weakest_tied: int = 0

    @property
    def audit_accuracy(self) -> float | None:
        return self.audit_correct / self.audit_n if self.audit_n else None


WEAKEST_SHOWN = 3  # classes named in "Weakest classes", and how many more are as weak


def accuracy_report(store: Store, registry: ModelRegistry, now: datetime) -> AccuracyReport | None:
    """The report of the model a server serves (``ModelRegistry.serving_order``): the champion,
    or, when its metadata (``vN.json``) is damaged, the earlier version a server falls back to,
    with ``damaged`` set; None while there is no model."""
    champion, damaged = registry.champion(), None
    if champion is None:  # none, or its metadata is damaged: the version a server falls back to
        order, unreadable = registry.serving_order()
        if not order:
            return None
        champion, damaged = order[0], max(unreadable)
    metrics = champion.metrics or {}
    # the champion's questions, and its refreshes' since it became champion (not for a fallback:
    # the refreshes of another champion asked then)
    since = champion_since(champion) if damaged is None else None
    refreshed = {"refreshes_since": since} if since else {}
    audit_n, audit_ok = store.live_accuracy(champion.version, "audit", **refreshed)
    unc_n, unc_ok = store.live_accuracy(champion.version, "uncertain", **refreshed)
    per_class = metrics.get("per_class") or {}
    notes, names = class_notes(store, champion, per_class)
    ranked = sorted(  # a class with no held-out example (older models' metrics list it) has no F1
        (
            (names.get(label, label), float(r["f1"]), int(r["support"]))
            for label, r in per_class.items()
            if int(r.get("support") or 0) > 0
        ),
        key=lambda row: (row[1], row[0]),
    )
    weakest = ranked[:WEAKEST_SHOWN]
    tied = sum(1 for row in ranked[WEAKEST_SHOWN:] if f"{row[1]:.2f}" == f"{weakest[-1][1]:.2f}")
    created = datetime.fromisoformat(champion.created_at)
    trend = [
        VersionPoint(
            v.version,
            v.status,
            v.n_train,
            _float(v.metrics.get("accuracy")),
            _float(v.metrics.get("macro_f1")),
            v.created_at,
            old_folds=scored_with_old_folds(v.metrics),
        )
        for v in registry.versions()
    ][-10:]
    return AccuracyReport(
        version=champion.version,
        created_at=champion.created_at,
        age_days=max((now - created).total_seconds() / 86400, 0.0),
        n_train=champion.n_train,
        cv_accuracy=_float(metrics.get("accuracy")),
        cv_macro_f1=_float(metrics.get("macro_f1")),
        n_splits=int(metrics.get("n_splits") or 0),
        audit_n=audit_n,
        audit_correct=audit_ok,
        audit_interval=wilson_interval(audit_ok, audit_n),
        uncertain_n=unc_n,
        uncertain_correct=unc_ok,
        weakest=weakest,
        trend=trend,
        stopping=stop_status(store),
        damaged=damaged,
        refreshes_counted=bool(since) and store.has_refresh_posts_since(since),
        people_answered=bool(store.answers_by_user()),  # a count kept per person: cheap
        weakest_notes={label: notes[label] for label, _, _ in weakest if label in notes},
        weakest_tied=tied,
    )


def class_notes(
    store: Store, champion: ModelVersion, per_class: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str]]:
    """The champion's classes (``per_class``: named as at its training) whose name the label
    set in force no longer has, as live accuracy maps them (``label_aliases``): a renamed
    class is shown under its new name (the same items), a merged one under its own name,
    noted "merged into X since" (its figures describe no class in force), a retired one noted
    so. Returns (notes by the name shown, the names shown by the trained name).

    A class is renamed when the label in force descends from it by renames alone
    (``_renamed_from``, read back through the label set's changes): merged into B, then B
    renamed C, A is "merged into C" and B is shown as C; two trained classes are never shown
    under one name (two merged into a label made since are both noted merged)."""
    in_force = store.stored_labels()
    if in_force is None:  # never changed: the set in force is the one the model knows
        return {}, {}
    aliases, retired = store.label_aliases(), store.retired_labels()
    trained = set(per_class) | set(getattr(champion, "label_set", None) or [])
    renamed_from = _renamed_from(store.label_set_changes(), trained)
    for now in set(aliases.values()) - set(renamed_from):  # none renamed into it: one class
        sources = [label for label in trained if aliases.get(label) == now]  # alone is it
        if len(sources) == 1:
            renamed_from[now] = sources[0]
    since = f"since v{champion.version} was trained"
    notes: dict[str, str] = {}
    names: dict[str, str] = {}
    for label in per_class:
        if label in in_force:
            continue
        now = aliases.get(label)
        gone = f"; {_marked(now)} retired since" if now in retired else ""
        if (
            now is not None
            and now not in trained
            and now not in per_class
            and renamed_from.get(now) == label
        ):
            names[label] = now  # renamed: the same class under its new name
            notes[now] = f"named {_marked(label)} when v{champion.version} was trained{gone}"
        elif now is not None:
            notes[label] = f"merged into {_marked(now)} {since}{gone}"
        elif label in retired:
            notes[label] = f"retired {since}"
        else:
            notes[label] = "not in the label set now"
    return notes, names


def _renamed_from(changes: Sequence[Mapping[str, Any]], trained: set[str]) -> dict[str, str]:
    """Each label some change renamed into → the trained class it descends from by renames
    alone, newest change first (a merge into it along the way is another class joining it,
    not this one), when the chain reaches a trained class."""
    out: dict[str, str] = {}
    renames = [c for c in changes if c.get("action") == "rename" and c.get("new_label")]
    for start in {str(c["new_label"]) for c in renames}:
        name, before = start, len(renames)
        while True:
            step = next(
                (j for j in range(before - 1, -1, -1) if renames[j]["new_label"] == name), None
            )
            if step is None:
                break
            name, before = str(renames[step]["label"]), step
            if name in trained:
                out[start] = name
                break
    return out


def champion_since(champion: ModelVersion) -> str | None:
    """When ``champion`` was last made champion (UTC ISO, to the millisecond, as posts are
    timed): its ``champion_since``, else the time of the newest entry of its history that made
    it champion (metadata written before ``champion_since`` was), else None (unknown: only its
    own questions count)."""
    when = getattr(champion, "champion_since", "") or next(
        (
            entry.get("at", "")
            for entry in reversed(getattr(champion, "history", None) or [])
            if entry.get("status") == "champion"
        ),
        "",
    )
    if not when:
        return None
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return _iso(moment)


async def accuracy_report_off_loop(
    served: Store, registry: ModelRegistry, now: datetime
) -> AccuracyReport | None:
    """``accuracy_report`` in a worker thread, on a connection of its own (``Store.apart``):
    it reads every model's metadata file and the answers to one version's questions."""

    def run() -> AccuracyReport | None:
        with served.apart() as store:
            return accuracy_report(store, registry, now)

    return await asyncio.to_thread(run)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _age(days: float) -> str:
    if days < 1 / 24:
        return "less than an hour"
    if days < 1:
        return f"{days * 24:.0f} hours"
    return f"{days:.1f} days"


# Beside every cross-validated figure: the labels it is measured on are mostly the questions the
# loop asked because the model was unsure, the hardest items (an outside audit: 18–20 points
# below the accuracy on new trec items, 3–15 on the demo), and the live audit figure and
# Accuracy now are the ones drawn at random.
CV_NOTE = (
    "Cross-validated figures are measured on the labels people gave: the questions asked "
    "because the model was unsure are its hardest items, so with many of those they read low "
    "against new items (by up to 20 points). For new items read live accuracy on audit posts "
    "(random picks) and Accuracy now (a fixed random sample)."
)


def accuracy_text(report: AccuracyReport | None) -> str:
    """The report in Slack mrkdwn (see ``plain`` for a terminal)."""
    if report is None:
        return (
            f"*No model yet.* {command('retrain')} trains the first one now, or the next"
            " scheduled retrain does; it needs 2 labels with 2 different texts each."
        )
    lines = [
        f"*Model v{report.version}* — {_age(report.age_days)} old, "
        f"trained on {count(report.n_train, 'label')}",
        *(
            [
                f"*Champion v{report.damaged}:* its metadata (v{report.damaged}.json) is "
                f"damaged, so v{report.version}, the newest earlier version, is the one a "
                "server loads"
            ]
            if report.damaged is not None
            else []
        ),
        f"*Cross-validated* ({report.n_splits}-fold): accuracy {_pct(report.cv_accuracy)}, "
        f"macro-F1 {report.cv_macro_f1:.3f}"
        if report.cv_macro_f1 is not None
        else "*Cross-validated:* –",
        *([CV_NOTE] if report.cv_macro_f1 is not None and report.people_answered else []),
    ]
    asked_by = (
        f"v{report.version} and the working model refreshed from it since it became champion"
        if report.refreshes_counted
        else f"v{report.version}"
    )
    if report.audit_n:
        lo, hi = report.audit_interval
        lines.append(
            f"*Live accuracy on audit posts* (random picks, unbiased): "
            f"{_pct(report.audit_accuracy)} (95% CI {_pct(lo)}–{_pct(hi)}, "
            f"n={report.audit_n}), asked by {asked_by}"
        )
    else:
        lines.append(f"*Live accuracy on audit posts:* no audit answers yet (asked by {asked_by})")
    if report.uncertain_n:
        share = report.uncertain_correct / report.uncertain_n
        lines.append(
            f"*Agreement on uncertain posts* (biased low: the hardest items): "
            f"{_pct(share)} (n={report.uncertain_n})"
        )
    if report.weakest:
        notes = report.weakest_notes
        weak = ", ".join(
            f"{name(label)} (F1 {f1:.2f}, n={n}"
            + (f"; {_with_names(notes[label])}" if label in notes else "")
            + ")"
            for label, f1, n in report.weakest
        )
        if report.weakest_tied:  # as weak as the third: naming three would hide them
            weak += f", and {report.weakest_tied:,} more at F1 {report.weakest[-1][1]:.2f}"
        lines.append(f"*Weakest classes:* {weak}")
    if report.stopping is not None:
        lines += report.stopping.lines()
    if len(report.trend) > 1:
        lines.append("*Trend:*\n" + trend_table(report.trend))
    return "\n".join(lines)


def lost_models(
    known: Mapping[int, Mapping[str, Any]],
    versions: Sequence[ModelVersion],
    unreadable: dict[int, str],
    models_dir: Path,
    files: Mapping[int, str | None] | None = None,
    backup_models: Path | None = None,
) -> list[str]:
    """What is wrong when the models folder lacks versions the database records, holds
    metadata it cannot read, or a champion whose model file is missing or damaged, and the
    fix (empty when all is well). ``files``: what ``file_problems`` found, if the caller
    checked already (else the champion's file, and its fallbacks', are checked here).
    ``backup_models``: the models folder made with the backup just restored (`hitl
    restore`: ``<backup>.models``), named with the command that copies it when it holds
    the versions the folder lacks."""
    lines = []
    readable = {v.version for v in versions}
    missing = sorted(set(known) - readable - set(unreadable))
    champion = next((v for v in reversed(versions) if v.status == "champion"), None)
    has_champion = champion is not None
    newest = max([*known, *readable, *unreadable], default=0)
    if missing:
        named = [v for v in missing if known[v]["status"] == "champion"]
        head = (
            f"the database records model{'s' if len(missing) > 1 else ''} "
            + ", ".join(f"v{v}" for v in missing)
            + (f" (champion v{named[0]})" if named else "")
            + f" but {models_dir} has no files for "
            + ("it" if len(missing) == 1 else "them")
        )
        beside = models_beside(known, missing, models_dir)
        if beside is None and backup_models is not None:
            beside = models_of_backup(missing, models_dir, backup_models)
        if beside is not None:
            lines.append(f"{head}; {beside}")
        elif champion is not None and max(missing) < max([*readable, *unreadable]):
            # older than the folder's models (a retrain since): only a rollback needs them
            them = "it" if len(missing) == 1 else "them"
            lines.append(
                f"{head}: restore them from a backup of {models_dir} to roll back to {them}"
            )
        else:
            lines.append(
                f"{head}: restore them from a backup of {models_dir}, or `hitl retrain` trains a"
                f" new model (v{newest + 1})"
                + (
                    f"; meanwhile `hitl serve` serves v{champion.version} from {models_dir}, a"
                    " folder older than the database"
                    if champion is not None
                    else ""
                )
            )
    for version, why in unreadable.items():
        earlier = [
            v.version
            for v in versions
            if v.version < version and v.status == "retired" and not v.pruned_at
        ]
        if has_champion:
            fix = f"until then v{version} cannot be rolled back to"
        elif earlier:
            fix = f"or `hitl rollback {earlier[-1]}` makes v{earlier[-1]} the champion"
        else:
            fix = f"or `hitl retrain` trains a new model (v{newest + 1})"
        lines.append(
            f"{models_dir / f'v{version}.json'} is damaged ({why}): restore it from a backup"
            + ("; " if has_champion else ", ")
            + fix
        )
    if (missing or unreadable) and not has_champion:
        below = max(unreadable, default=newest + 1)  # the registry's fallback: older than that
        earlier = [
            v.version
            for v in versions
            if v.version < below and v.status == "retired" and not v.pruned_at
        ]
        serves = f"v{earlier[-1]}, an earlier model" if earlier else "no model"
        lines.append(f"until then `hitl serve` serves {serves}")
    if champion is not None and not champion.pruned_at:
        line = champion_file_problem(champion, versions, models_dir, newest, files)
        if line is not None:
            lines.append(line)
    return lines


def file_problems(registry: ModelRegistry, versions: Sequence[ModelVersion]) -> dict[int, str]:
    """Why each version's model file would not load (missing, damaged: sha256 mismatch, …),
    for the versions that keep their file (``ModelRegistry.file_problem``); reads them."""
    found = {}
    for meta in versions:
        if meta.pruned_at:
            continue
        try:
            problem = registry.file_problem(meta.version)
        except ModelError:
            continue  # its metadata changed meanwhile: the listing says what it read
        if problem is not None:
            found[meta.version] = problem
    return found


def champion_file_problem(
    champion: ModelVersion,
    versions: Sequence[ModelVersion],
    models_dir: Path,
    newest: int,
    files: Mapping[int, str | None] | None = None,
) -> str | None:
    """When the champion's model file is missing or damaged (its ``vN.json`` intact): which
    version `hitl serve` serves instead (the newest retired one whose file is sound, as
    ``ModelRegistry.load_champion`` falls back), and the fix; None when its file is sound."""
    checked = dict(files) if files is not None else {}
    registry = None

    def problem(version: int) -> str | None:
        nonlocal registry
        if version not in checked:
            if files is not None or not models_dir.is_dir():
                return None
            registry = registry or ModelRegistry(models_dir)
            try:
                checked[version] = registry.file_problem(version)
            except ModelError:
                checked[version] = None  # its metadata: the unreadable ones are said apart
        return checked[version]

    why = problem(champion.version)
    if why is None:
        return None
    c = champion.version
    fallback = next(
        (
            v.version
            for v in reversed(versions)
            if v.status == "retired" and not v.pruned_at and problem(v.version) is None
        ),
        None,
    )
    what, _, detail = why.partition(": ")
    said = f"{what} ({detail})" if detail else what
    head = f"champion v{c}'s model file {models_dir / f'v{c}.skops'} is {said}"
    retrain = f"`hitl retrain --force` trains a new model (v{newest + 1})"
    if fallback is None:
        return (
            f"{head} and no earlier version can stand in: restore v{c}.skops from a backup of"
            f" {models_dir}, or {retrain}; until then `hitl serve` serves no model"
        )
    return (
        f"{head}, so `hitl serve` serves v{fallback} instead: restore v{c}.skops from a backup"
        f" of {models_dir}, make v{fallback} the champion (`hitl rollback {fallback}`), or"
        f" {retrain}"
    )


def models_of_backup(missing: Sequence[int], models_dir: Path, backup_models: Path) -> str | None:
    """The fix when ``backup_models``, the models folder made beside a backup (README: `cp -a
    hitl.db.models /backups/hitl-DATE.db.models`), holds the ``missing`` versions the
    database restored from that backup records: the command that copies it in place of
    ``models_dir``. None when it is not there or lacks one of them."""
    try:
        if not backup_models.is_dir():
            return None
        registry = ModelRegistry(backup_models)
        for version in missing:
            registry.get(version)
        made = models_dir.is_dir()
        empty = made and not any(models_dir.iterdir())
    except (ModelError, OSError):
        return None
    first = (
        f"remove the empty {models_dir} first, then run "
        if empty
        else f"move {models_dir} aside first, then run "
        if made
        else ""
    )
    copy = f"cp -a {shlex.quote(str(backup_models))} {shlex.quote(str(models_dir))}"
    return f"{backup_models} (beside the backup) has them: {first}`{copy}`"


def models_beside(
    known: Mapping[int, Mapping[str, Any]], missing: Sequence[int], models_dir: Path
) -> str | None:
    """The fix when another ``*.models`` folder beside the database holds the versions it
    records that ``models_dir`` lacks (each ``vN.json`` naming the sha256 the database
    records): the database was renamed, or copied, without its folder. None when none does."""
    try:
        others = sorted(
            p
            for p in models_dir.parent.glob("*.models")
            if p.name != models_dir.name and p.is_dir()
        )
    except OSError:
        return None
    for other in others:
        registry = ModelRegistry(other)
        try:
            if all(
                known[v].get("sha256") and registry.get(v).sha256 == known[v]["sha256"]
                for v in missing
            ):
                break
        except (ModelError, OSError):
            continue
    else:
        return None
    source = other.with_name(other.name.removesuffix(".models"))
    try:
        made = models_dir.is_dir()
        empty = made and not any(models_dir.iterdir())
    except OSError:
        made = empty = False
    first = (
        f" (remove the empty {models_dir.name} first)"
        if empty
        else f" (move {models_dir.name} aside first)"
        if made
        else ""
    )
    if source.exists():  # copied: the database it belonged to still uses it
        return (
            f"{other} beside it has them (was the database copied from {source.name}?): copy"
            f" {other.name} to {models_dir.name}{first}"
        )
    return (
        f"{other} beside it has them (was the database renamed from {source.name}?): rename"
        f" {other.name} to {models_dir.name}{first}"
    )


def trained_labels(store: Store, configured: Sequence[str] = ()) -> TrainedLabels:
    """The labels a champion for ``store``'s database must answer with (its decided items'
    labels, under their names now after renames and merges, in force: not retired, within
    the stored set, else ``configured``, HITL_LABELS), and the renamed and merged ones (old
    → the label they count for now). Reads the per-label counts and the label set's rows:
    a few rows, whatever the number of items."""
    aliases, out = store.label_aliases(), store.labels_not_in_force(configured)
    decided = {aliases.get(label, label) for label in store.label_set()}
    return TrainedLabels(aliases, {label for label in decided if label not in out})


@dataclass(frozen=True)
class TrainedLabels:
    """``trained_labels``: what a champion must answer with, and the renamed labels."""

    aliases: Mapping[str, str]
    in_force: set[str]

    def missing(self, champion: ModelVersion) -> list[str]:
        """The labels in force that ``champion`` cannot answer with: none of its classes is
        one, nor was renamed or merged into one."""
        known = {self.aliases.get(label, label) for label in champion.label_set}
        return sorted(self.in_force - known)


def other_models(
    known: Mapping[int, Mapping[str, Any]], differ: Sequence[ModelVersion], models_dir: Path
) -> str:
    """The line for versions the folder and the database both number but that are other
    models (another sha256 in ``vN.json`` than in the database's row), with the fix."""
    one = len(differ) == 1
    named = ", ".join(f"v{v.version}" for v in differ)
    shown = "; ".join(
        f"v{v.version}.json: sha256 {v.sha256[:12]}…, {count(v.n_train, 'label')}; the"
        f" database's v{v.version}: sha256 {str(known[v.version]['sha256'])[:12]}…,"
        f" {count(int(known[v.version].get('n_train') or 0), 'label')}"
        for v in differ
    )
    served = next((v.version for v in differ if v.status == "champion"), None)
    serves = (
        f"`hitl serve` serves v{served}, a model this database did not train"
        if served
        else f"a rollback to {'it' if one else 'them'} serves a model this database did not train"
    )
    newest = max([*known, *(v.version for v in differ)], default=0)
    return (
        f"{models_dir}'s {named} {'is not the model' if one else 'are not the models'} the"
        f" database records as {named} ({shown}): the folder holds another database's models"
        f" (a box rebuilt, then a backup restored beside its folder?), and {serves}; with the"
        f" server stopped, move {models_dir} aside so that `hitl retrain` trains v{newest + 1} on"
        f" this database's labels, or restore {models_dir} from the backup made with this"
        " database"
    )


def unknown_models(
    known: Mapping[int, Mapping[str, Any]],
    versions: Sequence[ModelVersion],
    newest_label: str | None,
    models_dir: Path,
    trained: TrainedLabels | None = None,
) -> list[str]:
    """The models folder's versions that are not the database's, when they matter, in one line
    with the fix; empty otherwise. `hitl models`, `hitl serve` at start and `hitl restore` say it.

    A version both record under one number but with another sha256 in its ``vN.json`` than
    the database's row (the folder holds another database's models: a box rebuilt, then a
    backup restored beside its new folder). Compared by the sha256 each records: no model
    file is read here (the champion's file is checked against its ``vN.json`` by
    ``lost_models`` and at load, as before).

    A champion the database does not record, trained on labels newer than any the database
    has, or unable to answer labels in force that have training labels (``trained``: trained
    on names the database does not know): the database restored from a backup older than the folder,
    the answers or renames that model learned from undone. One trained on the labels the
    database has (a retrain killed before it recorded its model) is said nothing of: the
    server records it, rightly."""
    differ = [
        v
        for v in versions
        if v.version in known and known[v.version].get("sha256") not in (None, "", v.sha256)
    ]
    if differ:
        return [other_models(known, differ, models_dir)]
    champion = next((v for v in reversed(versions) if v.status == "champion"), None)
    if champion is None or champion.version in known:
        return []
    newer = ""
    trained_until = str(champion.extra.get("label_watermark") or "")
    if trained_until and trained_until > (newest_label or ""):
        newer = (
            ", trained on labels newer than any in the database (was the database restored"
            " from an older backup?)"
        )
    labels = trained.missing(champion) if trained is not None else []
    if not newer and not labels:
        return []
    unknown = [v.version for v in versions if v.version not in known]
    files = ", ".join(f"v{v}.json and v{v}.skops" for v in unknown)
    recorded = next((v for v, m in known.items() if m["status"] == "champion"), None)
    back = next(
        (
            v.version
            for v in versions
            if v.version == recorded and v.status == "retired" and not v.pruned_at
        ),
        None,
    )
    fix = (
        f"`hitl rollback {back}` makes v{back}, the database's champion, the champion again, or"
        f" with the server stopped move {files} out of {models_dir}"
        if back is not None
        else f"with the server stopped, move {files} out of {models_dir}"
    )
    cannot = ""
    if labels:
        newest = max([*known, *(v.version for v in versions)], default=0)
        fix += f", or `hitl retrain --force` trains v{newest + 1} on the database's labels"
        one = len(labels) == 1
        cannot = (
            f" and cannot answer with {', '.join(labels[:-1])}{'' if one else ' or '}"
            f"{labels[-1]}, {'a label' if one else 'labels'} of the database's decided items"
            " (trained on other label names: was the database restored from a backup made"
            " before renames?)"
        )
    return [
        f"{models_dir} holds model{'s' if len(unknown) > 1 else ''} "
        + ", ".join(f"v{v}" for v in unknown)
        + f" (champion v{champion.version}), which the database does not record"
        + newer
        + cannot
        + f": `hitl serve` serves v{champion.version} and records it; {fix}"
    ]


OLD_FOLDS = (
    "† scored with the folds of before (a text and its repeats could be on both sides of a"
    " fold): on data with repeated texts it reads higher than the newer models' figures"
)


def scored_with_old_folds(metrics: Mapping[str, Any]) -> bool:
    """Whether a model's cross-validated figures came from folds that split a text's repeats:
    saved with figures but without ``folds`` (``model.evaluation.FOLDS``), by older code."""
    return metrics.get("accuracy") is not None and "folds" not in metrics


def trend_table(points: list[VersionPoint]) -> str:
    rows = ["version  status     labels  accuracy  macro-F1"]
    for p in points:
        f1 = "–" if p.macro_f1 is None else f"{p.macro_f1:.3f}"
        mark = "†" if p.old_folds else ""  # not *: mrkdwn
        rows.append(
            f"v{p.version:<7} {p.status:<10} {p.n_train:>6,}  {_pct(p.accuracy):>8}  {f1:>8}{mark}"
        )
    if any(p.old_folds for p in points):
        rows.append(OLD_FOLDS)
    return "```" + "\n".join(rows) + "```"


def retrain_text(outcome: Outcome, admins: Sequence[str] = (), timezone: str = "UTC") -> str:
    """The report posted after a retrain (mrkdwn); a failure mentions ``admins``, so they hear
    of it even when nobody of them asked for this retrain (the nightly one). ``timezone``
    (HITL_TIMEZONE): the zone its dates are in, the team's days."""
    who = outcome.triggered_by
    if outcome.status == "busy":
        return f"Not started: {outcome.reason}; try again when it is done."  # says who holds it
    if outcome.status == "nothing_new":
        still = f" {_needed(outcome.n_missing)} to train." if outcome.n_missing else ""
        anyway = "" if still else f" {command('retrain --force')} trains and promotes one anyway."
        return f"*Retrain ({who}):* {outcome.reason}; training skipped.{still}{anyway}"
    if outcome.status == "failed" and outcome.n_missing:
        kept = f" Model v{outcome.previous_version} stays." if outcome.previous_version else ""
        cc = f" cc {', '.join(f'<@{a}>' for a in admins)}" if admins else ""
        return (
            f"*Retrain ({who}) not started:* {outcome.reason}. "
            f"{_needed(outcome.n_missing)}.{kept}{cc}"
        )
    if outcome.status == "failed":
        kept = f" Model v{outcome.previous_version} stays." if outcome.previous_version else ""
        cc = f" cc {', '.join(f'<@{a}>' for a in admins)}" if admins else ""
        # a retrain stopped before it read the labels (the models folder missing) knows none
        so_far = f" {count(outcome.n_labels, 'label')} so far." if outcome.n_labels else ""
        return f"*Retrain ({who}) did not produce a model:* {outcome.reason}.{so_far}{kept}{cc}"
    verdict = "promoted ✅" if outcome.promoted else "rejected ❌"
    lines = [f"*Retrain v{outcome.version}: {verdict}* ({who}, {outcome.seconds:.0f} s)"]
    if outcome.forced:
        lines.append("⚠️ *Forced:* promoted by an admin even though it was not better.")
    # new since the champion was trained (the labels its refit leaves out), not since the last
    # run: after a rejected night they are counted again, so the report says since when
    since = f" since v{outcome.previous_version} was trained" if outcome.previous_version else ""
    lines.append(f"*Labels:* {outcome.n_labels:,} ({outcome.n_new:,} new{since})")
    if outcome.why:  # trained for another reason than new labels (HITL_PIPELINE changed)
        lines.append(f"*Trained because:* {outcome.why}")
    new_f1, old_f1 = outcome.metrics.get("macro_f1"), outcome.previous_metrics.get("macro_f1")
    new_acc, old_acc = outcome.metrics.get("accuracy"), outcome.previous_metrics.get("accuracy")
    # One "before" figure compares: the champion refitted on the labels it had and scored on
    # the candidate's folds, in *Why* (the gate's comparison). Its score from its own training
    # is on other labels and folds, so it is shown on its own line, labelled, not as a change.
    if isinstance(new_f1, float):
        if isinstance(old_f1, float) and isinstance(old_acc, float):
            lines.append(
                f"*Macro-F1:* {new_f1:.3f} · *accuracy:* {_pct(new_acc)} "
                f"(v{outcome.version}, {_cv(outcome.metrics, outcome.n_labels)})"
            )
            lines.append(
                f"*v{outcome.previous_version} at its own training:* macro-F1 {old_f1:.3f} · "
                f"accuracy {_pct(old_acc)} ({_cv(outcome.previous_metrics, None)}; "
                f"other labels and folds than v{outcome.version}'s)"
            )
        else:
            lines.append(f"*Macro-F1:* {new_f1:.3f} · *accuracy:* {_pct(new_acc)} (first model)")
        lines += not_evaluated_lines(outcome.metrics)
    lines.append(f"*Why:* {outcome.reason}")
    if isinstance(new_f1, float) and outcome.asked:  # after the gate's figures, before stopping
        lines.append(CV_NOTE)  # (imported labels alone are no harder than new items)
    status = StopStatus.from_dict(outcome.stopping) if outcome.stopping else None
    if outcome.promoted and status is not None:
        lines += status.lines()
    elif not outcome.promoted:
        # the candidate's own forecast and settling are of a model nobody will use: not shown
        # (a month's test: "predictions have settled … unlikely to help much" under 15
        # rejections in a row); the champion's are in `/hitl accuracy`
        streak = Streak(**outcome.streak) if outcome.streak else None
        lines += rejected_lines(outcome, streak, timezone)
    if outcome.promoted and outcome.queue_after:
        before, after = outcome.queue_before, outcome.queue_after
        took = f" in {outcome.rescore_seconds:.0f} s" if outcome.rescore_seconds >= 10 else ""
        lines.append(
            f"*Queue:* re-scored {count(outcome.rescored, 'item')}{took}; waiting for people "
            f"{before.get('for_people', 0):,} → {after['for_people']:,}{_gold_among(after)},"
            f" left to the model {before.get('for_model', 0):,} → {after['for_model']:,}"
        )
    elif outcome.promoted and outcome.rescoring:
        before = outcome.queue_before
        lines.append(
            f"*Queue:* v{outcome.version} is re-scoring the waiting items in the background "
            f"(before it: {before.get('for_people', 0):,} waiting for people"
            f"{_gold_among(before)}, {before.get('for_model', 0):,} left to the model);"
            " new questions are its choice now."
        )
    elif not outcome.promoted:
        lines.append(f"*Queue:* unchanged; v{outcome.previous_version} stays champion.")
    return "\n".join(lines)


def _gold_among(queue: dict[str, int]) -> str:
    """`` (2 of them gold questions)`` after the items waiting for people, as `/hitl stats`
    says it (gold questions are not scored: why they may outnumber the items re-scored);
    nothing while none waits."""
    gold = queue.get("gold", 0)
    return f" ({gold:,} of them gold questions)" if gold > 0 else ""


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


def rejected_lines(outcome: Outcome, streak: Streak | None, timezone: str = "UTC") -> list[str]:
    """A rejected retrain's lines after *Why*: how many retrains in a row were rejected and
    since when the champion stands (``streak``, when known: its day in ``timezone``,
    HITL_TIMEZONE), from the second on what usually causes a run of them and where to look,
    and where the champion's when to stop is."""
    champion = f"v{outcome.previous_version}"
    lines = gold_lines(outcome)
    if streak is not None and streak.rejected and streak.champion == outcome.previous_version:
        day = local_date(streak.since, timezone)
        since = f" since {day} ({_age(streak.days)})" if streak.since else ""
        held = f"{champion} has been champion{since}"
        if streak.rejected == 1:
            lines.append(f"*Champion:* {champion}{since}; the first retrain rejected since.")
        else:
            lines.append(f"*{ordinal(streak.rejected)} rejection in a row:* {held}.")
            why = (
                "usually labels given since {0} was trained disagree with the earlier ones (a"
                " careless or confused labeller, a label used in a new sense, a wrong import);"
                " every later candidate trains on them, so more labels rarely help until they"
                " are fixed."
                if not outcome.n_gold_missed
                else "this one on the gold questions: either labels given since {0} was"
                " trained are wrong (a careless or confused labeller, a wrong import), or the"
                " team now uses a label in a new sense and the gold labels above are out of"
                " date; every later candidate trains on the new labels, so more labels rarely"
                " help until one or the other is fixed."
            ).format(champion)
            lines.append(
                f"*Rejected again and again:* {why} {command('stats')} shows each"
                " person's agreement and accuracy on gold, `/hitl review` the split votes and"
                " the labels the model contradicts, `hitl export --answers` every answer with"
                " who gave it and when; `hitl labels set` or `hitl labels remove` fixes a label"
                " (`hitl labels history` lists those changes)."
            )
    if outcome.previous_version is None:
        return lines
    lines.append(
        f"*When to stop:* not judged on a rejected candidate; {command('accuracy')} gives"
        f" {champion}'s and its working model's"
    )
    return lines


def gold_lines(outcome: Outcome) -> list[str]:
    """A retrain rejected on the gold questions: the ones the candidate answered otherwise than
    their gold label (the first few, with what the team answered there, and how many in all),
    that gold labels may be out of date and how to update them, and on how many gold questions
    most of the team's answers differ from the gold label. None otherwise."""
    if not outcome.n_gold_missed:
        return []
    shown = ", ".join(_gold_miss(miss) for miss in outcome.gold_missed)
    more = outcome.n_gold_missed - len(outcome.gold_missed)
    lines = [
        f"*Gold questions the candidate got wrong:* {outcome.n_gold_missed:,} in all: {shown}"
        + (f" and {more:,} more" if more > 0 else ""),
        "*Gold labels:* if the team's labeling changed, the gold labels may be out of date:"
        " `hitl labels set ID LABEL` updates one, `hitl labels set ID ID … LABEL` several at"
        " once.",
    ]
    if outcome.n_gold_disputed:
        lines.append(
            f"*The team and gold disagree:* on {count(outcome.n_gold_disputed, 'gold question')}"
            " most of the team's answers differ from the gold label; each counts as a miss in"
            f" that person's accuracy on gold ({command('stats')})."
        )
    return lines


def _gold_miss(miss: Mapping[str, Any]) -> str:
    """``g7 (gold billing, the candidate says account, 3 of the team's 4 answers say
    account)``; without the team's part when nobody answered it."""
    answer = name(str(miss["answer"]))
    team, agree = miss.get("team") or 0, miss.get("team_answer") or 0
    said = (
        f", {agree:,} of the team's {count(team, 'answer')} {'says' if agree == 1 else 'say'}"
        f" {answer}"
        if team
        else ""
    )
    return (
        f"{escape(str(miss['id']))} (gold {name(str(miss['gold']))}, the candidate says"
        f" {answer}{said})"
    )


def _cv(metrics: dict, n_labels: int | None) -> str:
    """``3-fold CV on its 30 labels`` from a model's metrics (what they hold of it); when the
    folds scored fewer than it trained on (``not_evaluated``: labels with too few examples to
    hold out), ``2-fold CV on 17 of its 18 labels; 1 not evaluated, too few examples to hold
    out``: its training labels are the count every other line gives."""
    k, n = metrics.get("n_splits"), metrics.get("n_samples", n_labels)
    folds = f"{k}-fold CV" if isinstance(k, int) and k else "cross-validated"
    if not isinstance(n, int):
        return folds
    never = metrics.get("not_evaluated")
    rest = sum(v for v in never.values() if isinstance(v, int)) if isinstance(never, dict) else 0
    if rest > 0:
        return (
            f"{folds} on {n:,} of its {n + rest:,} labels; {rest:,} not evaluated, too few"
            " examples to hold out"
        )
    return f"{folds} on its {n:,} labels"


def not_evaluated_lines(metrics: dict) -> list[str]:
    """The labels cross-validation never held out (fewer examples than folds: they trained in
    every fold), with their numbers of examples; none, no line."""
    never = metrics.get("not_evaluated") or {}
    if not isinstance(never, dict) or not never:
        return []
    shown = ", ".join(f"{name(str(label))} ({n:,})" for label, n in list(never.items())[:10])
    more = f" and {len(never) - 10:,} more" if len(never) > 10 else ""
    return [f"*Not evaluated* (too few examples to hold out): {shown}{more}"]


def _needed(n_missing: int) -> str:
    return f"{count(n_missing, 'more label', 'more labels')} needed"


# The `/hitl` subcommands the terminal has too, as `hitl NAME`. Text both show names them with
# ``command``, in Slack's form; ``plain``, the terminal's rendering, names the CLI's.
IN_BOTH = ("retrain", "rollback", "accuracy", "stats", "labels")
_SLACK_COMMAND = re.compile(r"`/hitl (?=(?:" + "|".join(IN_BOTH) + r")\b)")


def command(words: str) -> str:
    """```/hitl retrain```: a command that Slack and the terminal both have, for a text both
    show (``plain`` turns it into ```hitl retrain```)."""
    name = words.split()[0]
    if name not in IN_BOTH:
        raise ValueError(f"`hitl {name}` is not a command of both Slack and the terminal")
    return f"`/hitl {words}`"


# A label in report text: ``name`` (bot.words) shows it for Slack or, within ``for_terminal``,
# between marks that ``plain`` drops leaving what is between untouched.
_NAMED = re.compile(f"{NAME_OPEN}([^{NAME_OPEN}{NAME_CLOSE}]*){NAME_CLOSE}")
# _italic_ the product wrote: an underscore with no letter, digit or backtick outside it and
# text inside, on one line (HITL_VOTES and how_to keep theirs)
_ITALIC = re.compile(r"(?<![\w`])_(?=[^\s_])([^\n]*?[^\s_])_(?![\w`])")


def _with_names(text: str) -> str:
    """Text holding ``_marked`` labels, escaped for a report, its labels as ``name`` shows
    them."""
    parts = _NAMED.split(text)
    return "".join(name(part) if odd % 2 else escape(part) for odd, part in enumerate(parts))


def terminal(build: Callable[[], str]) -> str:
    """``build()``'s report (mrkdwn) as a terminal shows it: built ``for_terminal``, then
    ``plain``."""
    with for_terminal():
        return plain(build())


def plain(text: str) -> str:
    """Slack mrkdwn to terminal text; a command both have names the CLI's (see ``command``).
    Drops the markup the product wrote (``*bold*``, ``_italic_``) but not a label's own
    characters: a label ``name`` marked for the terminal is shown as it is."""
    parts = _NAMED.split(text)
    return "".join(part if odd % 2 else _unmarkup(part) for odd, part in enumerate(parts))


def _unmarkup(text: str) -> str:
    """``plain`` of text with no marked label: mentions as @U…, no bold nor italic marks
    outside a code span (within one, as a label ``name_mrkdwn`` shows, they are the text's)."""
    text = _SLACK_COMMAND.sub("`hitl ", text)
    text = re.sub(r"<@(\w+)>", r"@\1", text)
    text = re.sub(r"<#(\w+)>", r"#\1", text)
    parts = _CODE.split(text.replace("```", "\n"))
    text = "".join(
        part if odd % 2 else _ITALIC.sub(r"\1", part.replace("*", ""))
        for odd, part in enumerate(parts)
    )
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


_CODE = re.compile(r"(`[^`\n]*`)")


def chart_png(report: AccuracyReport) -> bytes:
    """Accuracy by version and by number of labels, as a PNG (call it off the event loop)."""
    buffer = io.BytesIO()
    chart_figure(report).savefig(buffer, format="png")
    return buffer.getvalue()


def chart_figure(report: AccuracyReport) -> Figure:
    """The chart of ``chart_png`` as a matplotlib Figure: by version (left), by labels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    points = [p for p in report.trend if p.accuracy is not None]
    figure = Figure(figsize=(9, 3.6), dpi=100)
    by_version, by_labels = figure.subplots(1, 2)
    versions = [p.version for p in points]
    for ax, xs, xlabel in (
        (by_version, versions, "model version"),
        (by_labels, [p.n_train for p in points], "labels used"),
    ):
        ax.plot(xs, [p.accuracy for p in points], marker="o", label="accuracy (CV)")
        ax.plot(xs, [p.macro_f1 for p in points], marker="s", label="macro-F1 (CV)")
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    if versions:  # whole versions, half a step of room each side (one model: 0.5 to 1.5)
        shown = sorted({*versions, report.version})
        by_version.set_xticks(shown)
        by_version.set_xlim(shown[0] - 0.5, shown[-1] + 0.5)
        by_labels.set_xlim(0, max(max(p.n_train for p in points) * 1.1, 1))
    if report.audit_accuracy is not None:
        lo, hi = report.audit_interval
        acc = report.audit_accuracy
        by_version.errorbar(
            [report.version],
            [acc],
            yerr=[[acc - lo], [hi - acc]],
            fmt="D",
            color="black",
            capsize=4,
            label=f"live audit (n={report.audit_n})",
        )
    by_version.set_ylabel("score")
    by_version.legend(loc="lower right", fontsize=8)
    figure.suptitle(f"slack-hitl: model v{report.version}")
    figure.tight_layout()
    return figure
