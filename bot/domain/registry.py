"""The process registry (aops.yml): schema, loading with every error listed, and the live copy."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import date
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

PERSON_RE = re.compile(r"^(?:[UW][A-Z0-9]{2,}|S[A-Z0-9]{2,}|[^@\s]+@[^@\s]+\.[^@\s]+)$")
CHANNEL_RE = re.compile(r"^[CG][A-Z0-9]{2,}$")
DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

# Per-tier defaults for how long a decision may wait (stricter tiers wait less).
DEFAULT_EXPIRY_S = {0: 24 * 3600, 1: 24 * 3600, 2: 4 * 3600, 3: 4 * 3600, 4: 8 * 3600}
# How often each tier is reviewed unless review.every says otherwise (the governance model's cadence).
DEFAULT_REVIEW_S = {0: 90 * 86400, 1: 30 * 86400, 2: 30 * 86400, 3: 7 * 86400, 4: 7 * 86400}
# Time-to-decision targets (tiers 0-1: to acknowledge), unless approvals.target says otherwise.
DEFAULT_TARGET_S = {0: 4 * 3600, 1: 4 * 3600, 2: 30 * 60, 3: 3600, 4: 4 * 3600}
PILOT_DAYS = 90  # a pilot older than this is due its "scale or kill" call
# Sampling QA (docs/registry.md#sampling-qa): the share of recorded agent actions a person reviews,
# by tier unless qa.sample_rate says otherwise, and the error rate the digest flags.
DEFAULT_QA_SAMPLE_RATE = {0: 0.0, 1: 0.0, 2: 0.05, 3: 0.10, 4: 0.20}
DEFAULT_MAX_ERROR_RATE = 0.05
# Validation context of a snapshot an earlier release stored: rules added since then do not apply
# to it (it was valid when accepted), so the registry in force stays in force across an upgrade.
STORED = {"stored": True}


def parse_duration(value: str | int) -> int:
    """'15m', '1h30m', '2d', '45s' or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 15m or 1h")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    text = str(value).strip().lower()
    m = DURATION_RE.match(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"{value!r} is not a duration like 15m, 1h or 2d")
    d, h, mi, s = (int(g or 0) for g in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def is_user_id(person: str) -> bool:
    """A Slack user ID (U…, or W… on Enterprise Grid), as opposed to a group or an email."""
    return person[:1] in ("U", "W") and person.isalnum()


def _person(v: str) -> str:
    v = str(v).strip()
    if not PERSON_RE.match(v):
        raise ValueError(f"{v!r} is not a Slack user ID (U…), user group ID (S…) or email")
    return v


Person = Annotated[str, Field(min_length=1)]
Duration = Annotated[int, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Raci(_Strict):
    responsible: list[Person] = []
    accountable: Person | None = None
    consulted: list[Person] = []
    informed: list[Person] = []
    escalation: Person | None = None

    @field_validator("responsible", "consulted", "informed", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("responsible", "consulted", "informed")
    @classmethod
    def _people(cls, v: list[str]) -> list[str]:
        return [_person(p) for p in v]

    @field_validator("accountable", "escalation")
    @classmethod
    def _one_person(cls, v: str | None) -> str | None:
        return None if v is None else _person(v)


class PolicyLevel(_Strict):
    after: Duration = 0  # seconds since the escalation opened
    notify: list[Person] = Field(min_length=1)

    @field_validator("after", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> int:
        return parse_duration(v)

    @field_validator("notify", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("notify")
    @classmethod
    def _people(cls, v: list[str]) -> list[str]:
        return [_person(p) for p in v]


class Approvals(_Strict):
    approvers: list[Person] = []
    compliance: list[Person] = []
    expires_after: Duration | None = None
    target: Duration | None = None  # time-to-decision target (acknowledge at tiers 0-1)

    @field_validator("expires_after", "target", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> int | None:
        return None if v is None else parse_duration(v)

    @field_validator("approvers", "compliance")
    @classmethod
    def _people(cls, v: list[str]) -> list[str]:
        return [_person(p) for p in v]


class RateLimit(_Strict):
    per_minute: int = Field(default=60, ge=1)


class Review(_Strict):
    every: Duration | None = None
    last: date | None = None

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)


class QA(_Strict):
    # strict: a number, not "5%", "0.05" or true; None takes the tier's default
    sample_rate: float | None = Field(default=None, strict=True)
    reviewers: list[Person] = []
    max_error_rate: float | None = Field(default=None, strict=True)

    @field_validator("sample_rate", "max_error_rate")
    @classmethod
    def _share(cls, v: float | None) -> float | None:
        if v is not None and not 0 <= v <= 1:  # NaN fails this too
            raise ValueError(f"{v:g} is not a share from 0 to 1 (0.05 is 5%)")
        return v

    @field_validator("reviewers", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("reviewers")
    @classmethod
    def _reviewers(cls, v: list[str]) -> list[str]:
        return [_person(p) for p in v]


class Budget(_Strict):
    daily_usd: float | None = Field(default=None, ge=0)


class Process(_Strict):

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
    name: str = Field(min_length=1, max_length=200)
    tier: Literal[0, 1, 2, 3, 4]
    channel: str
    raci: Raci = Raci()
    escalation_policy: list[PolicyLevel] = []
    repeat: int = Field(default=0, ge=0, le=10)
    approvals: Approvals = Approvals()
    allowed_tools: list[str] | None = None
    redact: list[str] = []
    rate_limit: RateLimit = RateLimit()
    # The governance answers (docs/registry.md): the SLO card, the kill switch, review cadence.
    capability: Literal["draft", "act"] | None = None  # required in a file (checked with the other rules)
    blast_radius: str | None = Field(default=None, max_length=500)
    rollback: str | None = Field(default=None, max_length=2000)
    stage: Literal["pilot", "scaled", "retired"] | None = None
    started: date | None = None
    review: Review = Review()
    qa: QA = QA()
    budget: Budget = Budget()

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if not CHANNEL_RE.match(v):
            raise ValueError(f"{v!r} is not a Slack channel ID (C… or G…)")
        return v

    @model_validator(mode="before")
    @classmethod
    def _stored_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context == STORED and isinstance(data, dict) and "capability" not in data:
            data = {**data, "capability": "act"}  # before capability existed every process could act
        return data

    @model_validator(mode="after")
    def _tier_rules(self, info: ValidationInfo) -> Process:
        problems = [] if info.context == STORED else self._governance_problems()
        if self.raci.escalation is None and not self.escalation_policy:
            problems.append("raci.escalation: a process needs an escalation owner (or an escalation_policy)")
        afters = [lvl.after for lvl in self.escalation_policy]
        if afters != sorted(afters):
            problems.append("escalation_policy: levels must be in order of 'after'")
        if self.tier == 4 and not self.approvals.compliance:
            problems.append("approvals.compliance: tier 4 needs at least one compliance approver")
        if problems:  # every rule this process breaks, in one error (pydantic stops at the first raise)
            raise ValueError("\n".join(problems))  # a line each in the report (_format_errors)
        return self

    def _governance_problems(self) -> list[str]:
        """Rules added with the governance fields; a snapshot stored before them is exempt (STORED)."""
        return governance_problems(self.id, self.tier, self.capability, self.allowed_tools, self.rollback,
                                   self.qa.sample_rate)

    # -- derived views used by the domain -------------------------------------------------
    def levels(self) -> list[dict[str, Any]]:
        """The paging policy; without one, page the escalation owner."""
        if self.escalation_policy:
            return [{"after": lvl.after, "notify": list(lvl.notify)} for lvl in self.escalation_policy]
        return [{"after": 0, "notify": [self.raci.escalation]}]

    def approver_people(self) -> list[str]:
        """Who may approve (before group/email resolution). The escalation and accountable owners always may."""
        people: list[str] = list(self.approvals.approvers)
        for p in (self.raci.escalation, self.raci.accountable):
            if p and p not in people:
                people.append(p)
        for p in self.approvals.compliance if self.tier == 4 else []:
            if p not in people:
                people.append(p)
        return people

    def expiry_seconds(self) -> int:
        return self.approvals.expires_after or DEFAULT_EXPIRY_S[self.tier]

    def people(self) -> list[str]:
        """Everyone the registry names on this process, once each."""
        raci, out = self.raci, []
        for p in [raci.escalation, raci.accountable, *raci.responsible, *raci.consulted, *raci.informed,
                  *[q for lvl in self.escalation_policy for q in lvl.notify], *self.approvals.approvers,
                  *self.approvals.compliance, *self.qa.reviewers]:
            if p and p not in out:
                out.append(p)
        return out

    def governance_snapshot(self) -> dict[str, Any]:
        """The answers an escalation keeps (its thread's SLO card shows what it was raised under)."""
        return {"capability": self.capability, "allowed_tools": self.allowed_tools,
                "blast_radius": self.blast_radius, "rollback": self.rollback, "stage": self.stage,
                "people": self.people()}

    def review_every_seconds(self) -> int:
        return self.review.every or DEFAULT_REVIEW_S[self.tier]

    def qa_sample_rate(self) -> float:
        """The share of recorded agent actions posted for review (qa.sample_rate, else the tier's)."""
        return DEFAULT_QA_SAMPLE_RATE[self.tier] if self.qa.sample_rate is None else self.qa.sample_rate

    def qa_reviewers(self) -> list[str]:
        """Who may review a sampled action: qa.reviewers, else the escalation owner (or, without one,
        the first level of the paging policy)."""
        return list(self.qa.reviewers) or list(self.levels()[0]["notify"])

    def qa_max_error_rate(self) -> float:
        return DEFAULT_MAX_ERROR_RATE if self.qa.max_error_rate is None else self.qa.max_error_rate

    @property
    def retired(self) -> bool:
        return self.stage == "retired"


def governance_problems(pid: Any, tier: Any, capability: Any, allowed_tools: Any, rollback: Any,
                        qa_rate: Any = None) -> list[str]:
    """The governance rules on a process's values (validated, or raw when other fields failed, so a
    file's every error is listed in one go)."""
    out = []
    if capability is None:
        out.append("capability: required: add `capability: act` (its agent acts with its tools) or "
                   "`capability: draft` (it only drafts, a person acts)")
    if capability == "draft" and allowed_tools:
        out.append("allowed_tools: a draft process uses no tools (a person acts on its drafts); "
                   "remove allowed_tools or set capability: act")
    tier = tier if tier in (0, 1, 2, 3, 4) and not isinstance(tier, bool) else -1  # a bad tier has its own error
    if capability != "draft" and tier >= 2 and allowed_tools is None:
        out.append(f"allowed_tools: required at tier {tier} for a process that acts; "
                   "list the tools its agent may call (e.g. allowed_tools: [crm.update])")
    if tier >= 3 and not (rollback if isinstance(rollback, str) else "").strip():
        out.append(f"rollback: required at tier {tier}; say in one line how to undo what its "
                   f"agent does (e.g. rollback: \"Revert the PR; /aop pause {pid}\")")
    if tier >= 2 and qa_rate == 0 and not isinstance(qa_rate, bool):
        out.append(f"qa.sample_rate: tier {tier} requires sampling QA, so the rate may not be 0; "
                   f"remove it for the tier's default ({DEFAULT_QA_SAMPLE_RATE[tier]:g}) or set a share above 0")
    return out


class RegistryFile(_Strict):
    processes: list[Process]

    @model_validator(mode="after")
    def _unique(self) -> RegistryFile:
        seen: set[str] = set()
        for p in self.processes:
            if p.id in seen:
                raise ValueError(f"duplicate process id {p.id!r}")
            seen.add(p.id)
        return self


class RegistryError(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


def _format_errors(source: str, raw: Any, exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    out = []
    for err in exc.errors():
        loc = [*prefix, *err["loc"]]
        where = ""
        if len(loc) >= 2 and loc[0] == "processes" and isinstance(loc[1], int):
            idx = loc[1]
            pid = "?"
            try:
                pid = raw["processes"][idx].get("id", "?")
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
            where = f"processes[{idx}] ({pid})"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            model = _model_at(loc)
            msg = "unknown key" + (_did_you_mean(loc[-1], model.model_fields) if model else "")
        parts = [source]
        if where:
            parts.append(where)
        if field:
            parts.append(field)
        out += [": ".join(parts) + ": " + line for line in msg.split("\n")]
    return out


def parse_registry(text: str, source: str = "aops.yml") -> RegistryFile:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RegistryError([f"{source}: not valid YAML: {e}"]) from e
    except RecursionError:  # the YAML parser recurses per level; a registry never needs that depth
        raise RegistryError([f"{source}: nested too deeply to be a registry"]) from None
    if not isinstance(raw, dict):
        raise RegistryError([f"{source}: processes: the file must be a mapping with a 'processes' list"])
    too_deep = _deeper_than(raw, MAX_DEPTH)
    if too_deep:
        raise RegistryError([f"{source}: {too_deep}: nested deeper than {MAX_DEPTH} levels"])
    errors = _every_error(source, raw)
    if errors:
        raise RegistryError(errors)
    return RegistryFile.model_validate(raw)


def _every_error(source: str, raw: dict[str, Any]) -> list[str]:
    """Every problem in the file at once: unknown top-level keys, each process on its own (so one
    bad process hides nothing in the next), and duplicate ids, which pydantic would only reach once
    every process is valid."""
    errors = [f"{source}: {key}: unknown key{_did_you_mean(key, RegistryFile.model_fields)}"
              for key in raw if key not in RegistryFile.model_fields]
    procs = raw.get("processes")
    if not isinstance(procs, list):
        return errors + [f"{source}: processes: the file must be a mapping with a 'processes' list"]
    first_of: dict[str, int] = {}
    for i, p in enumerate(procs):
        pid = p.get("id") if isinstance(p, dict) else None
        try:
            Process.model_validate(p)
        except ValidationError as e:
            found = _format_errors(source, raw, e, prefix=("processes", i))
            if isinstance(p, dict):  # the rules pydantic did not reach because a field failed
                where = f"{source}: processes[{i}] ({pid if isinstance(pid, str) else '?'}): "
                qa_raw = p.get("qa") if isinstance(p.get("qa"), dict) else {}
                found += [where + m for m in governance_problems(pid, p.get("tier"), p.get("capability"),
                                                                  p.get("allowed_tools"), p.get("rollback"),
                                                                  qa_raw.get("sample_rate"))
                          if not any(f.startswith(where + m.split(":")[0] + ":") or
                                     f"did you mean '{m.split(':')[0]}'" in f for f in found)]
            errors += found
        if isinstance(pid, str):
            if pid in first_of:
                errors.append(f"{source}: processes[{i}] ({pid}): id: duplicate process id "
                              f"(also processes[{first_of[pid]}]); each process needs its own id")
            first_of.setdefault(pid, i)
    return errors


def _did_you_mean(key: Any, known) -> str:
    close = get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(known))})"


def _model_at(loc: list[Any]) -> type[BaseModel] | None:
    """The pydantic model that holds the last key of loc (a path inside one process)."""
    model: type[BaseModel] = Process
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        if get_origin(ann) is list:
            ann = get_args(ann)[0]
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


MAX_DEPTH = 32


def _deeper_than(raw: Any, limit: int) -> str | None:
    """The path of the first value nested deeper than limit, or None."""
    stack: list[tuple[Any, int, str]] = [(raw, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return path or "(top)"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack += [(v, depth + 1, f"{path}.{k}" if path else str(k)) for k, v in pairs]
    return None


def load_registry_file(path: str | Path) -> RegistryFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError([f"{p}: cannot read: {e.strerror}"]) from e
    return parse_registry(text, str(p))


def registry_sha(reg: RegistryFile) -> str:
    data = json.dumps(reg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


class Registry:
    """The registry in force. Swapped whole, so readers never see half an update."""

    def __init__(self, reg: RegistryFile | None = None, snapshot_id: int | None = None):
        self._lock = threading.Lock()
        self._set(reg or RegistryFile(processes=[]), snapshot_id)

    def _set(self, reg: RegistryFile, snapshot_id: int | None) -> None:
        self.file = reg
        self.snapshot_id = snapshot_id
        self.by_id: dict[str, Process] = {p.id: p for p in reg.processes}

    def replace(self, reg: RegistryFile, snapshot_id: int | None = None) -> None:
        with self._lock:
            self._set(reg, snapshot_id)

    def get(self, process_id: str) -> Process | None:
        return self.by_id.get(process_id)

    def all(self) -> list[Process]:
        return list(self.by_id.values())


# -- persistence: every replica follows the newest accepted snapshot ----------------------------


def store_snapshot(session, reg: RegistryFile, source: str) -> int:
    """Record reg as the registry in force unless it already is; return the snapshot id."""
    from sqlalchemy import select

    from bot.domain.models import RegistrySnapshot
    from bot.ops import clock

    sha = registry_sha(reg)
    latest = session.scalars(select(RegistrySnapshot).order_by(RegistrySnapshot.id.desc()).limit(1)).first()
    if latest is not None and latest.sha256 == sha:
        return latest.id
    snap = RegistrySnapshot(sha256=sha, source=source, content=reg.model_dump(mode="json"), loaded_at=clock.now())
    session.add(snap)
    session.flush()
    return snap.id


def latest_snapshot(session) -> tuple[int, RegistryFile] | None:
    from sqlalchemy import select

    from bot.domain.models import RegistrySnapshot

    snap = session.scalars(select(RegistrySnapshot).order_by(RegistrySnapshot.id.desc()).limit(1)).first()
    if snap is None:
        return None
    # A snapshot an earlier release stored may carry keys it accepted and ignored on a process; they
    # never did anything, so the registry in force stays in force without them.
    content = dict(snap.content)
    content["processes"] = [{k: v for k, v in p.items() if k in Process.model_fields} if isinstance(p, dict) else p
                            for p in content.get("processes", [])]
    return snap.id, RegistryFile.model_validate(content, context=STORED)
