"""Model versions on disk: atomic save, safe load, promote, reject and roll back.

The registry is a directory (the bot passes ``<db>.models/``). Version ``N`` is two
files: ``vN.skops`` (the fitted pipeline in skops' safe format, never pickle; the layout is
in ``model/modelfile.py``) and ``vN.json`` (its metadata, including the sha256 of
``vN.skops``). Both are written to a temporary file and renamed into place, model first, so a
version exists only once its metadata is complete. One writer at a time is assumed (the bot
holds a retrain lock). A promotion marks the new champion before it retires the old one, so a
process killed in between leaves two champions, never none: readers take the one promoted last
(by ``promotion``, a counter each promotion, rollback included, sets one above any in the
folder; not by the wall clock, which may have been wrong then), and the next save retires the
other. Temporary files a killed writer left are deleted by the next save or prune (``sweep``).

Slightly over ~400 lines: saving, loading, promotion and rollback share the metadata
format and the confinement checks, so they stay together; the file layout is in
``model/modelfile.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from model.errors import IntegrityError, InvalidInputError, RegistryError

if TYPE_CHECKING:
    from model.classifier import TextClassifier

# scikit-learn, skops and the classifier are imported where a model file is read or written,
# not here: listing versions and reading the champion's metadata stay cheap (``hitl serve``
# asks whether there is a champion before it imports anything heavy).

logger = logging.getLogger(__name__)

Status = Literal["candidate", "champion", "rejected", "retired"]
STATUSES: tuple[str, ...] = ("candidate", "champion", "rejected", "retired")

TRUSTED_TYPES: tuple[str, ...] = ()
"""Types trusted beyond skops' defaults. Our pipelines need none (a test pins this)."""

_FILE = re.compile(r"^v(\d+)\.(skops|json)$")
_TEMP = re.compile(r"^\.v(\d+)\.(skops|json)\..+\.tmp$")  # ``_atomic_write``'s, before the rename

STALE_TEMP_SECONDS = 3600.0
"""A temporary file older than this is a killed writer's: a write holds one for seconds (a
model file of hundreds of MB included), so no running writer's is ever this old."""


@dataclass(frozen=True)
class ModelVersion:
    """Metadata of one stored model version (the content of ``vN.json``)."""

    version: int
    status: Status
    created_at: str
    label_set: list[str]
    n_train: int
    metrics: dict[str, object]
    sklearn_version: str
    sha256: str
    pipeline_name: str
    model_file: str
    reason: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    pruned_at: str = ""  # when its model file was deleted by ``prune`` ("" = still there)
    history: list[dict[str, str]] = field(default_factory=list)  # {at, status, reason}, oldest 1st
    champion_since: str = ""  # when it was last made champion, to the microsecond ("" = never,
    # or before this was recorded): for display, and to order champions without ``promotion``
    promotion: int = 0  # the folder's promotion counter when it was last made champion: one
    # above every version's in the folder (0 = never, or before this was recorded); of two
    # champions a killed promotion left, the higher wins, whatever the clock said then

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def reasons(self) -> list[str]:
        """Every reason this version was given (its decision, then rollbacks), oldest first."""
        if self.history:
            return [entry["reason"] for entry in self.history]
        return [self.reason] if self.reason else []

    def scores(self) -> str:
        """``accuracy 26.9%, macro-F1 0.180``, for messages."""
        accuracy, macro_f1 = self.metrics.get("accuracy"), self.metrics.get("macro_f1")
        parts = []
        if isinstance(accuracy, int | float):
            parts.append(f"accuracy {accuracy:.1%}")
        if isinstance(macro_f1, int | float):
            parts.append(f"macro-F1 {macro_f1:.3f}")
        return ", ".join(parts) or "no scores recorded"

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ModelVersion:
        """The version ``data`` (a ``vN.json``) describes; TypeError (a missing field) or
        ValueError (``_field_problem``: not an object, a field of the wrong type) when it is
        not one: valid JSON edited by hand or rewritten by a tool crashed every reader."""
        if not isinstance(data, Mapping):
            raise ValueError(f"it holds {_json_kind(data)}, not an object of fields")
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in data.items() if k in known}
        for name, value in fields.items():
            problem = _field_problem(name, value)
            if problem is not None:
                raise ValueError(f'its "{name}" is {_json_kind(value)}, not {problem}')
        for name, value in dict(fields.get("extra") or {}).items():  # what its readers assume
            check = _EXTRA_CHECKS.get(name)
            if check is not None and not (value is None or check[1](value)):
                raise ValueError(f'its "extra.{name}" is {_json_kind(value)}, not {check[0]}')
        return cls(**fields)  # type: ignore[arg-type]


def _json_kind(value: object) -> str:
    """``value`` as JSON names it, for a message: "null", "a list", "a number (5)"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, Mapping) else type(value).__name__


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_time(value: object) -> bool:
    """An ISO 8601 time, as the registry writes ``created_at`` (its readers parse it)."""
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_history(value: object) -> bool:
    """``history`` as ``_with_status`` writes it: entries of strings, each with a reason."""
    return isinstance(value, list) and all(
        isinstance(x, dict) and "reason" in x and all(isinstance(y, str) for y in x.values())
        for x in value
    )


def _is_labels(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _is_object(value: object) -> bool:
    return isinstance(value, dict)


def _is_metrics(value: object) -> bool:
    """``metrics`` as its readers (`hitl models`, `hitl accuracy`, the reports) take it: an
    object whose scores are numbers, with a count of folds, and per label an object with a
    number F1 (each may be missing or null)."""
    if not isinstance(value, dict):
        return False
    per_class, never = value.get("per_class") or {}, value.get("not_evaluated") or {}
    return (
        all(value.get(key) is None or _is_number(value[key]) for key in ("accuracy", "macro_f1"))
        and (value.get("n_splits") is None or _is_count(value["n_splits"]))
        and isinstance(per_class, dict)
        and all(
            isinstance(r, dict)
            and (r.get("support") is None or _is_number(r["support"]))
            and (_is_number(r.get("f1")) or not r.get("support"))  # none held out: no F1
            for r in per_class.values()
        )
        and isinstance(never, dict)
        and all(_is_number(n) for n in never.values())
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_string(value: object) -> bool:
    return isinstance(value, str)


# What each field of ``vN.json`` must be (its readers assume it), as a message names it.
# ``promotion`` is left out: ``_promotion`` reads any value that is not a count as 0.
_FIELD_CHECKS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "version": ("a version number", _is_count),
    "status": ("a status (" + ", ".join(STATUSES) + ")", lambda v: v in STATUSES),
    "created_at": ("a time (ISO 8601)", _is_time),
    "label_set": ("a list of labels", _is_labels),
    "n_train": ("a count", _is_count),
    "metrics": ("an object of scores (numbers)", _is_metrics),
    "extra": ("an object", _is_object),
    "history": ("a list of objects of strings with a reason", _is_history),
    "sklearn_version": ("a string", _is_string),
    "sha256": ("a string", _is_string),
    "pipeline_name": ("a string", _is_string),
    "model_file": ("a string", _is_string),
    "reason": ("a string", _is_string),
    "pruned_at": ("a string", _is_string),
    "champion_since": ("a string", _is_string),
}


PRUNED_FOR = "pruned_for"
"""``extra``'s key for why a version's model file was deleted, when not to save space (a
version pruned before it was written, or by ``prune``, has none)."""

PRUNED_WHY = {
    "": "to save space (only the champion and the newest versions keep theirs)",
    "deleted text": "because it was trained on text deleted while it trained (hitl delete)",
    "full disk": "to free room on a full disk, as its retrain failed",
}
"""Why a version's file was deleted, as messages say it, by ``extra[PRUNED_FOR]``."""


def pruned_words(meta: ModelVersion) -> str:
    """When and why ``meta``'s model file was deleted: "2026-12-06 to save space (…)"."""
    why = PRUNED_WHY.get(str(meta.extra.get(PRUNED_FOR) or ""), PRUNED_WHY[""])
    return f"{meta.pruned_at[:10]} {why}"


def _is_label_set_mark(value: object) -> bool:
    """``extra.label_set_mark`` as a retrain writes it: the id of the label set's newest
    change its read saw (``change``) and that change's time (``at``), each may be missing."""
    return (
        isinstance(value, dict)
        and (value.get("change") is None or _is_count(value["change"]))
        and (value.get("at") is None or isinstance(value["at"], str))
    )


# What each field of ``extra`` a retrain writes must be when it is there and not null (its
# readers assume it: a merge's count reads ``label_set_mark``, the gold check
# ``gold_read_at``); other fields of ``extra`` are not read, and not checked.
_EXTRA_CHECKS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "label_watermark": ("a time (a string) or null", _is_string),
    "label_seq": ("a count or null", _is_count),
    "gold_read_at": ("a time (a string) or null", _is_string),
    "label_set_mark": (
        'an object with a count "change" and a time "at", or null',
        _is_label_set_mark,
    ),
    "champion_macro_f1": ("a number or null", _is_number),
    "gold_check": ("an object or null", _is_object),
    "fit_seconds": ("a number or null", _is_number),
    "triggered_by": ("a string or null", _is_string),
}


def _field_problem(name: str, value: object) -> str | None:
    """What field ``name`` of ``vN.json`` must be, when ``value`` is not that; else None."""
    check = _FIELD_CHECKS.get(name)
    if check is None or check[1](value):
        return None
    return check[0]


@dataclass(frozen=True)
class LoadedModel:
    """A loaded classifier, its metadata, and any newer versions refused on the way."""

    meta: ModelVersion
    classifier: TextClassifier
    refused: list[tuple[int, str]] = field(default_factory=list)


def _promotion(meta: ModelVersion) -> int:
    """``meta``'s promotion counter; 0 when it has none (metadata written before it was
    recorded, or edited by hand into something that is not a count)."""
    count = meta.promotion
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0


def _newest_champion(versions: list[ModelVersion]) -> ModelVersion | None:
    """The champion among ``versions``: the one made champion last (a promotion killed between
    its two writes leaves the new champion and the old one both marked). That is the higher
    ``promotion`` counter, never the wall clock (one running ahead when the old champion was
    promoted must not make it the newer). Metadata written before the counter (0) is ordered
    as it was then: by ``champion_since``, then by version number when neither says when; any
    promotion since the counter exists has one, so it is newer than those."""
    champs = [v for v in versions if v.status == "champion"]
    return max(
        champs, key=lambda v: (_promotion(v), str(v.champion_since or ""), v.version), default=None
    )


def _next_promotion(versions: list[ModelVersion]) -> int:
    """The counter the next promotion records: one above the highest any version records."""
    return max((_promotion(v) for v in versions), default=0) + 1


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    """Versioned models in the directory ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._warned: set[int] = set()  # versions whose unreadable metadata was logged or told
        self._said: set[str] = set()  # refused model files logged (again: at INFO)

    # -- reading ---------------------------------------------------------------------

    def _meta_path(self, version: int) -> Path:
        return self.root / f"v{version}.json"

    def scan(self, *, told: bool = False) -> tuple[list[ModelVersion], dict[int, str]]:
        """Every version with readable metadata, oldest first, and the unreadable ones with
        why (``vN.json`` damaged, or naming another file); nothing is logged. ``told``: the
        caller says the unreadable ones itself (`hitl accuracy`, `hitl serve`'s start), so
        :meth:`versions` of this registry does not log them too. Of two champions a killed
        promotion left, the one readers ignore reads as ``retired`` (as the next save writes
        it): listed so, a fallback, and a version one can roll back to."""
        out, unreadable = self._listed()
        if told:
            self._warned.update(unreadable)
        return out, unreadable

    def _listed(self) -> tuple[list[ModelVersion], dict[int, str]]:
        out, unreadable = self._scan_files()
        champ = _newest_champion(out)
        out = [v if v.status != "champion" or v is champ else replace(v, status="retired")
               for v in out]  # fmt: skip
        return out, unreadable

    def _scan_files(self) -> tuple[list[ModelVersion], dict[int, str]]:
        """``scan`` as the files say, two champions included."""
        out, unreadable = [], {}
        for path in self.root.iterdir():
            m = _FILE.match(path.name)
            if m and m.group(2) == "json":
                try:
                    out.append(self.get(int(m.group(1))))
                except RegistryError as exc:
                    unreadable[int(m.group(1))] = str(exc)
        return sorted(out, key=lambda v: v.version), dict(sorted(unreadable.items()))

    def versions(self) -> list[ModelVersion]:
        """Every version with readable metadata, oldest first (an unreadable one is logged,
        once per registry, unless :meth:`scan` returned it to a caller that ``told`` it)."""
        out, unreadable = self._listed()
        for version, why in unreadable.items():
            if version not in self._warned:
                self._warned.add(version)
                logger.warning("skipping model metadata v%d.json: %s", version, why)
        return out

    def highest_version(self) -> int:
        """The highest version number any file in the folder has (0: none)."""
        numbers = [int(m.group(1)) for p in self.root.iterdir() if (m := _FILE.match(p.name))]
        return max(numbers, default=0)

    def get(self, version: int) -> ModelVersion:
        """Metadata of ``version``; :class:`RegistryError` if missing or unreadable.

        Messages name versions, never a path on this machine (admins see them in Slack); the
        log keeps the details. Metadata whose model file is not its own ``vN.skops`` in this
        folder is refused, so neither ``load`` nor ``prune`` ever reaches another file."""
        path = self._meta_path(version)
        try:
            meta = ModelVersion.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise RegistryError(f"model v{version} does not exist (see `hitl models`)") from None
        except OSError as exc:
            logger.warning("model v%d metadata unreadable: %s", version, exc)
            raise RegistryError(f"model v{version}'s metadata is unreadable") from exc
        except (ValueError, TypeError) as exc:  # not JSON, or not a version's (``from_dict``)
            raise RegistryError(f"model v{version} metadata is unreadable: {exc}") from exc
        except RecursionError:  # JSON nested past Python's limit ([[[[…]]]])
            raise RegistryError(
                f"model v{version} metadata is unreadable: it is nested too deep"
            ) from None
        if meta.version != version or meta.model_file != f"v{version}.skops":
            logger.warning(
                "model v%d metadata names version %r, file %r; refused",
                version,
                meta.version,
                meta.model_file,
            )
            raise RegistryError(
                f"model v{version}'s metadata names a model file other than its own "
                f"(v{version}.skops in the models folder); refused"
            )
        return meta

    def _model_path(self, meta: ModelVersion) -> Path:
        """``vN.skops`` inside this folder (``get`` already refused any other name); a
        symlink that leads out of the folder is refused too."""
        path = self.root / f"v{meta.version}.skops"
        if path.is_symlink() and path.resolve().parent != self.root.resolve():
            raise RegistryError(f"model v{meta.version}'s file lies outside the models folder")
        return path

    def champion(self) -> ModelVersion | None:
        """The champion's metadata (the one promoted last, should a crash have left two)."""
        return _newest_champion(self.versions())

    def load(self, version: int) -> TextClassifier:
        """Load ``version`` after checking its sha256; refuses untrusted types.

        Raises :class:`IntegrityError` when the file does not match its recorded
        sha256 and :class:`RegistryError` when it is missing or cannot be loaded.
        """
        meta = self.get(version)
        if meta.pruned_at:
            raise RegistryError(f"model v{version}'s file was deleted on {pruned_words(meta)}")
        path = self._model_path(meta)
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._say(f"model v{version} file unreadable: {exc}")
            raise RegistryError(f"model v{version}'s file is missing or unreadable") from exc
        digest = _sha256(data)
        if digest != meta.sha256:
            raise IntegrityError(
                f"model v{version} file {meta.model_file} has sha256 {digest[:12]}…, "
                f"metadata says {meta.sha256[:12]}…; the file was changed or damaged"
            )
        import sklearn
        from sklearn.exceptions import InconsistentVersionWarning

        from model import modelfile
        from model.classifier import TextClassifier
        from model.quiet import quiet

        if meta.sklearn_version != sklearn.__version__:
            logger.warning(
                "model v%d was saved with scikit-learn %s, running %s; the next retrain"
                " (`hitl retrain --force` now) saves one with this version",
                version,
                meta.sklearn_version,
                sklearn.__version__,
            )
        try:
            # said above in one line: not scikit-learn's three per estimator (fifteen for one
            # model), nor refused outright under PYTHONWARNINGS=error; model.quiet, not
            # warnings.catch_warnings, which is process-wide (a fit in another thread would
            # lose its own hidden warnings when this block left)
            with quiet((InconsistentVersionWarning, "")):
                pipeline = modelfile.loads(data, trusted=list(TRUSTED_TYPES))
            return TextClassifier.from_pipeline(pipeline, meta.label_set, meta.pipeline_name)
        except Exception as exc:  # skops raises many kinds; all mean "refuse this file"
            raise RegistryError(
                f"model v{version} could not be loaded safely: {type(exc).__name__}: {exc}"
            ) from exc

    def file_problem(self, version: int) -> str | None:
        """Why ``vN.skops`` would not load, in a few words for a listing ("missing", "damaged:
        sha256 mismatch", "unreadable: …", "deleted to save space", "outside the models
        folder"); None when it is there and matches the sha256 its metadata records. Reads
        the file (as :meth:`load` does) but does not unpack it. :class:`RegistryError` when
        the metadata itself cannot be read."""
        meta = self.get(version)
        if meta.pruned_at:
            return {
                "deleted text": "deleted: trained on text deleted as it trained",
                "full disk": "deleted to free room on a full disk",
            }.get(str(meta.extra.get(PRUNED_FOR) or ""), "deleted to save space")
        try:
            data = self._model_path(meta).read_bytes()
        except RegistryError:
            return "outside the models folder"
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return f"unreadable: {exc.strerror or type(exc).__name__}"
        return None if _sha256(data) == meta.sha256 else "damaged: sha256 mismatch"

    def _say(self, message: str) -> None:
        """Log a refused model file: a WARNING the first time, INFO after (a server loads the
        champion more than once at start; the fix is said once, by the caller)."""
        level = logging.INFO if message in self._said else logging.WARNING
        self._said.add(message)
        logger.log(level, "%s", message)

    def serving_order(self) -> tuple[list[ModelVersion], dict[int, str]]:
        """The versions :meth:`load_champion` tries, in order, and the unreadable metadata (as
        :meth:`scan` returns it); reads metadata only, so a report can name the version a
        server serves without loading it.

        The first is the champion, then the retired versions that keep their files, newest
        first. With no readable champion but damaged metadata (a ``vN.json`` that does not
        parse), the damaged version is taken for the champion: the order holds only the
        retired versions older than it (its first then is no champion). Empty when there is no
        champion and nothing to fall back to."""
        versions, unreadable = self.scan()
        champ = _newest_champion(versions)
        retired = [v for v in reversed(versions) if v.status == "retired" and not v.pruned_at]
        if champ is not None:
            return [champ, *retired], unreadable
        if unreadable:
            return [v for v in retired if v.version < max(unreadable)], unreadable
        return [], unreadable

    def load_champion(self) -> LoadedModel | None:
        """Load the champion, falling back to the previous good version.

        Each refused version (tampered, unreadable) is logged with its reason and listed
        in ``LoadedModel.refused``; the fallbacks are the retired versions, newest first.
        Statuses on disk are not changed (call :meth:`rollback` to make it official).
        With no readable champion but damaged metadata (a ``vN.json`` that does not parse), the
        damaged version is taken for the champion, refused: the fallbacks are the retired
        versions older than it. Returns ``None`` when there is no champion or nothing loads.
        """
        order, unreadable = self.serving_order()
        if not order:
            return None
        champ = order[0]
        refused: list[tuple[int, str]] = []
        if champ.status != "champion":  # the champion may be the version whose metadata is damaged
            broken = max(unreadable)
            refused.append((broken, unreadable[broken]))
            self._warned.update(unreadable)
            logger.warning(
                "no champion: %s; using v%d, the newest earlier version. Restore v%d.json "
                "from a backup, or make v%d the champion (`hitl rollback %d`)",
                unreadable[broken],
                champ.version,
                broken,
                champ.version,
                champ.version,
            )
            # (``refused`` is not empty: the loop below logs which version it used)
        for meta in order:
            try:
                clf = self.load(meta.version)
            except RegistryError as exc:
                self._say(f"model v{meta.version} refused: {exc}")
                refused.append((meta.version, str(exc)))
                continue
            if refused and meta is not champ:
                self._say(f"using model v{meta.version} instead of champion v{champ.version}")
            return LoadedModel(meta, clf, refused)
        return None

    # -- writing ---------------------------------------------------------------------

    def _write_meta(self, meta: ModelVersion) -> None:
        text = json.dumps(meta.to_dict(), indent=2, ensure_ascii=False, sort_keys=True)
        _atomic_write(self._meta_path(meta.version), text.encode("utf-8"))

    def replace_word(self, old: str, new: str) -> list[int]:
        """Replace ``old`` where it stands as a word (not inside a longer run of letters and
        digits) with ``new`` in every text of every version's metadata (who started a
        retrain, a reason that names a person), rewriting each file that had it; the
        versions rewritten, oldest first. Metadata that cannot be read is left alone. One
        writer at a time, as every write here: the caller holds the bot's retrain lock."""
        word = re.compile(rf"(?<![^\W_]){re.escape(old)}(?![^\W_])")

        def swap(value: object) -> object:
            if isinstance(value, str):
                return word.sub(new, value)
            if isinstance(value, list):
                return [swap(v) for v in value]
            if isinstance(value, dict):
                return {k: swap(v) for k, v in value.items()}
            return value

        rewritten = []
        for meta in self._scan_files()[0]:
            before = meta.to_dict()
            after = swap(before)
            if after != before:
                self._write_meta(ModelVersion.from_dict(after))
                rewritten.append(meta.version)
        return rewritten

    def save(
        self,
        classifier: TextClassifier,
        *,
        n_train: int,
        metrics: Mapping[str, object] | None = None,
        reason: str = "",
        extra: Mapping[str, object] | None = None,
        now: datetime | None = None,
        at_least: int = 1,
    ) -> ModelVersion:
        """Store ``classifier`` as the next version with status ``candidate``: one above
        every version in the folder, and at least ``at_least`` (the caller may know of
        versions whose files are gone; a number is never used twice)."""
        if classifier.pipeline_ is None:
            raise InvalidInputError("cannot save a classifier that has not been fitted")
        import sklearn

        from model import modelfile

        self._settle_champions()
        self.sweep()
        data = modelfile.dumps(classifier.pipeline_)
        version = max(self.highest_version() + 1, at_least)
        model_file = f"v{version}.skops"
        _atomic_write(self.root / model_file, data)
        meta = ModelVersion(
            version=version,
            status="candidate",
            created_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
            label_set=list(classifier.classes),
            n_train=int(n_train),
            metrics=dict(metrics or {}),
            sklearn_version=sklearn.__version__,
            sha256=_sha256(data),
            pipeline_name=classifier.pipeline_name,
            model_file=model_file,
            reason=reason,
            extra=dict(extra or {}),
        )
        try:
            self._write_meta(meta)
        except BaseException:
            # No metadata (a full disk took the second write): the model file goes too, or it
            # stays for good, on that disk, a version nothing names (prune reads metadata).
            if not self._meta_path(version).exists():
                try:
                    (self.root / model_file).unlink(missing_ok=True)
                except OSError:
                    pass  # the error that stopped the save is the one to tell
            raise
        return meta

    def set_status(
        self,
        version: int,
        status: Status,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> ModelVersion:
        """Change one version's status (use :meth:`promote` to make a champion).

        A new ``reason`` becomes the current one and is added to ``history``; the earlier
        reasons stay there (a rejection, then the rollback that overrode it)."""
        if status not in STATUSES:
            raise InvalidInputError(f"unknown status {status!r}; use one of {STATUSES}")
        new = _with_status(self.get(version), status, reason, now or datetime.now(UTC))
        self._write_meta(new)
        return new

    def reject(self, version: int, reason: str) -> ModelVersion:
        """Mark ``version`` rejected, keeping ``reason``."""
        if self.get(version).status == "champion":
            raise RegistryError(f"model v{version} is the champion; roll back instead")
        return self.set_status(version, "rejected", reason)

    def promote(self, version: int, reason: str | None = None) -> ModelVersion:
        """Make ``version`` the champion; the previous champion becomes ``retired``.

        The file is loaded first: a version that fails its integrity check or does
        not load is refused (:class:`RegistryError`) and nothing changes. The new
        champion is marked (with ``champion_since`` and the next ``promotion`` count) before
        the old one is retired, so a crash in between leaves two champions, and readers take
        the new one (the higher count, whatever the clock says); never none.
        """
        return self.promote_loaded(version, reason).meta

    def promote_loaded(self, version: int, reason: str | None = None) -> LoadedModel:
        """:meth:`promote`, returning the classifier it loaded (so nobody loads it twice)."""
        classifier = self.load(version)
        return LoadedModel(self._make_champion(version, reason), classifier)

    def reinstate(self, version: int, reason: str | None = None) -> ModelVersion:
        """Make ``version`` champion again without loading it: the champion a moment ago,
        retired by a promotion its caller takes back (its file was checked when it was
        promoted, and is read again when served). As :meth:`promote` otherwise: a new
        ``promotion`` count, marked before the other champion is retired."""
        meta = self.get(version)
        if meta.pruned_at or not (self.root / meta.model_file).is_file():
            raise RegistryError(f"model v{version}'s file was deleted; it cannot be champion")
        return self._make_champion(version, reason)

    def discard(self, version: int, reason: str) -> ModelVersion:
        """Reject ``version`` with ``reason`` and delete its model file (a model that must not
        be kept: trained on text deleted since). Its metadata stays, with ``pruned_at``,
        marked before the file goes, as :meth:`prune` does; a champion is refused."""
        meta = self.reject(version, reason)
        meta = replace(
            meta,
            pruned_at=datetime.now(UTC).isoformat(timespec="seconds"),
            extra={**meta.extra, PRUNED_FOR: "deleted text"},
        )
        self._write_meta(meta)
        (self.root / meta.model_file).unlink(missing_ok=True)
        return meta

    def drop_file(self, version: int) -> ModelVersion:
        """Delete ``version``'s model file and mark its metadata pruned, the file first (a
        retrain cut short by a full disk: the room the file frees is what the mark needs; when
        even that fails, the version claims a missing file, which ``file_problem`` tells)."""
        meta = self.get(version)
        (self.root / meta.model_file).unlink(missing_ok=True)
        meta = replace(
            meta,
            pruned_at=datetime.now(UTC).isoformat(timespec="seconds"),
            extra={**meta.extra, PRUNED_FOR: "full disk"},
        )
        self._write_meta(meta)
        return meta

    def _make_champion(self, version: int, reason: str | None) -> ModelVersion:
        now = datetime.now(UTC)
        new = _with_status(self.get(version), "champion", reason, now)
        count = _next_promotion(self._scan_files()[0])
        new = replace(new, champion_since=now.isoformat(timespec="microseconds"), promotion=count)
        self._write_meta(new)  # first: killed after this, the new one is the champion
        for meta in self._scan_files()[0]:
            if meta.status == "champion" and meta.version != version:
                self.set_status(meta.version, "retired")
        return new

    def _settle_champions(self) -> None:
        """Retire the champions a killed promotion left beside the one readers take."""
        versions = self._scan_files()[0]
        champ = _newest_champion(versions)
        for meta in versions:
            if meta.status == "champion" and meta is not champ:
                self.set_status(meta.version, "retired")

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete the temporary files (``.vN.skops.*.tmp``, ``.vN.json.*.tmp``) a writer killed
        mid-write left; returns their names. A model file's is stale once ``vN.json`` exists (the
        model file is renamed into place before its metadata is written, and a version number is
        never written again once it has metadata); any is stale once older than
        STALE_TEMP_SECONDS. So a write under way in another process (a `hitl retrain` beside
        `hitl serve`) keeps its file: its version has no metadata yet, or its file is seconds
        old. Run by every :meth:`save` and :meth:`prune`."""
        now = time.time() if now is None else now
        swept = []
        for path in self.root.iterdir():
            m = _TEMP.match(path.name)
            if m is None:
                continue
            try:
                stale = now - path.stat().st_mtime > STALE_TEMP_SECONDS or (
                    m.group(2) == "skops" and self._meta_path(int(m.group(1))).exists()
                )
                if stale:
                    path.unlink()
                    swept.append(path.name)
            except FileNotFoundError:  # renamed or deleted meanwhile
                continue
        if swept:
            logger.info("deleted %d temporary file(s) a killed write left", len(swept))
        return sorted(swept)

    def prune(self, keep: int, now: datetime | None = None) -> list[int]:
        """Delete the model files of all but the champion and ``keep`` other versions: the
        newest one (the candidate just decided, which ``rollback --force`` may still want),
        then earlier champions before rejected candidates, newest first, so a run of rejected
        retrains (a bad week of labels) never leaves only models that need ``--force`` (one is
        written per retrain; 6–12 MiB at 1,000–10,000 labels, up to 400 MB
        for files written before ``model/modelfile.py``'s format). Their metadata stays, with
        ``pruned_at``, so the history is complete. Returns the pruned versions.

        Run after a retrain's decision. The metadata is marked first, so a crash before the
        file goes leaves only a stray file, never a version that claims a missing file."""
        if keep < 0:
            raise InvalidInputError(f"keep must be ≥ 0, got {keep}")
        others = [v for v in reversed(self.versions()) if v.status != "champion"]
        stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
        pruned = []
        for meta in [v for v in _keep_order(others) if not v.pruned_at][keep:]:
            self._write_meta(replace(meta, pruned_at=stamp))
            pruned.append(meta.version)
        for meta in others:  # also files a crash left behind
            if meta.version in pruned or meta.pruned_at:
                (self.root / f"v{meta.version}.skops").unlink(missing_ok=True)
        if pruned:
            logger.info("deleted the model files of v%s", ", v".join(map(str, pruned)))
        self.sweep()
        return pruned

    def check_rollback(
        self, version: int | None = None, *, force: bool = False, recorded: Collection[int] = ()
    ) -> ModelVersion:
        """What :meth:`rollback` would make champion, or :class:`RegistryError` saying why
        not; reads only metadata (quick: the model file is checked when it is loaded).

        A version that never was champion (rejected by the gate, or a candidate whose retrain
        did not finish) needs ``force``; the error names its scores and why it was rejected.
        ``recorded``: the versions the database records; one of them without metadata here
        had its files lost (a database restored without its models folder), and the error
        says so rather than that it does not exist.
        """
        if version is None:
            retired = [v for v in self.versions() if v.status == "retired" and not v.pruned_at]
            if not retired:
                raise RegistryError("no earlier model to roll back to")
            version = retired[-1].version
        try:
            meta = self.get(version)
        except RegistryError:
            if version in recorded and not self._meta_path(version).exists():
                raise RegistryError(
                    f"the database records model v{version}, but its files (v{version}.json,"
                    f" v{version}.skops) are missing from the models folder {self.root.name}:"
                    " restore them from a backup of that folder, or roll back to a version"
                    " that has its files"
                ) from None
            raise
        if meta.status == "champion" and (champ := self.champion()) is not None:
            if champ.version == version:
                raise RegistryError(f"model v{version} is already the champion")
            meta = replace(meta, status="retired")  # left by a killed promotion: not served
        if meta.pruned_at:
            raise RegistryError(f"model v{version}'s file was deleted on {pruned_words(meta)}")
        if meta.status in ("rejected", "candidate") and not force:
            why = f": {meta.reason}" if meta.reason else ""
            raise RegistryError(
                f"model v{version} was {_never_champion(meta)} ({meta.scores()}{why}); "
                "add --force to make it the champion anyway"
            )
        return meta

    def rollback(
        self, version: int | None = None, *, force: bool = False, by: str | None = None
    ) -> ModelVersion:
        """Make ``version`` (default: the newest retired version) the champion again.

        A rejected or unfinished version needs ``force`` (see :meth:`check_rollback`); the
        rollback's reason is added to the version's history, after the earlier ones."""
        return self.rollback_loaded(version, force=force, by=by).meta

    def rollback_loaded(
        self, version: int | None = None, *, force: bool = False, by: str | None = None
    ) -> LoadedModel:
        """:meth:`rollback`, returning the classifier it loaded."""
        meta = self.check_rollback(version, force=force)
        reason = f"rolled back to v{meta.version}" + (f" by {by}" if by else "")
        if meta.status in ("rejected", "candidate"):
            reason += f", forced although {meta.status} ({meta.scores()})"
        return self.promote_loaded(meta.version, reason)


def _with_status(
    meta: ModelVersion, status: Status, reason: str | None, now: datetime
) -> ModelVersion:
    """``meta`` with ``status``; a new ``reason`` becomes the current one and joins ``history``."""
    if reason is None or reason == meta.reason:
        return replace(meta, status=status)
    history = list(meta.history)
    if not history and meta.reason:
        history.append({"at": meta.created_at, "status": meta.status, "reason": meta.reason})
    history.append({"at": now.isoformat(timespec="seconds"), "status": status, "reason": reason})
    return replace(meta, status=status, reason=reason, history=history)


def _never_champion(meta: ModelVersion) -> str:
    if meta.status == "rejected":
        return "rejected"
    return "never promoted (its retrain did not finish)"


def _keep_order(others: list[ModelVersion]) -> list[ModelVersion]:
    """``others`` (newest first) in the order ``prune`` keeps their files: the newest, then
    the versions that were champion (``retired``: what ``rollback`` goes back to), then the
    rest (rejected candidates, unfinished ones), each newest first."""
    if not others:
        return []
    rest = others[1:]
    retired = [v for v in rest if v.status == "retired"]
    return [others[0], *retired, *(v for v in rest if v.status != "retired")]
