"""What a destination does to each instance before it is sent: de-identify, remove, set.

The steps run in that order, so a value set by the configuration (a study's pseudonym in
PatientID, a project name in ClinicalTrialProtocolID) survives the de-identification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from dicombus.routing.deidentify import BasicProfile
from dicombus.routing.tags import display_name


@dataclass(frozen=True, slots=True)
class SetTag:
    tag: str  # 8 hex digits
    vr: str
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Transform:
    """The destination's changes to an instance; the default changes nothing."""

    # The HMAC key of the pseudonymous UIDs; None: no de-identification.
    uid_secret: bytes | None = field(default=None, repr=False)
    # Where the secret came from, for display ("env DICOMBUS_DEID_SECRET").
    uid_secret_source: str = ""
    remove: tuple[str, ...] = ()
    set: tuple[SetTag, ...] = ()

    @property
    def deidentify(self) -> bool:
        return self.uid_secret is not None

    @property
    def is_identity(self) -> bool:
        return not (self.deidentify or self.remove or self.set)

    def apply(self, dataset: Dataset) -> Dataset:
        """Change ``dataset`` in place and return it."""
        if self.uid_secret is not None:
            BasicProfile(self.uid_secret).apply(dataset)
        for tag in self.remove:
            number = int(tag, 16)
            if number in dataset:
                del dataset[number]
        for change in self.set:
            dataset.add_new(int(change.tag, 16), change.vr, change.value)
        return dataset

    def describe(self) -> str:
        """One line for ``dicombus routes check``."""
        steps = []
        if self.deidentify:
            steps.append(
                f"de-identify (PS3.15 E.1-1 Basic Profile, UIDs keyed by {self.uid_secret_source})"
            )
        if self.remove:
            steps.append("remove " + ", ".join(display_name(tag) for tag in self.remove))
        if self.set:
            steps.append("set " + ", ".join(f"{display_name(s.tag)}={s.value!r}" for s in self.set))
        return "; ".join(steps) or "-"
