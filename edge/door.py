"""Door and barrier supervision: a gate's position contact compared with its own grants.

A gate whose config has ``[gates.door] contact = true`` reports its door or barrier on MQTT
(``gate/<id>/contact`` ``{"state": "open"|"closed"}``) and may have a request-to-exit
button (``gate/<id>/exit``). Lenel's door-forced and door-held, CEM's held-open after 15 s:

- opened with no grant, manual opening or exit request in the last ``window_s`` → forced
  (``door_forced``, P2, with the gate's picture and its last access events), cleared when
  it closes; each grant accounts for one opening, so a door opened again behind it (a
  tailgater, a door propped) is forced too;
- open longer than ``held_open_s`` → ``door_held``, cleared when it closes;
- ``stuck_after_grants`` grants in a row that never moved it → ``contact_stuck``: the
  contact (or its wiring) is broken, so the two alarms above could not be trusted.

A gate held open by its mode (edge.modes) is supervised quietly (``hold``): its door is open
by our command, so it is neither forced, nor held too long, nor its contact stuck.

``Door`` is the state of one gate, on the monotonic clock, changed in the one writer only
(a contact, an exit request and a grant are all writer jobs) and read by the ticker.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.config import DoorCfg

NEVER = float("-inf")


@dataclass
class Door:
    cfg: DoorCfg
    is_open: bool | None = None  # None: no contact report since start
    opened_at: float | None = None
    authorised_at: float = NEVER  # the last grant, manual opening or exit request
    grants_unmoved: int = 0  # grants since the contact last changed
    held_by_mode: bool = False  # the gate is held open by its mode (edge.modes)

    def authorise(self, now: float, grant: bool = True) -> None:
        """A grant (or a manual opening) commanded the barrier open, or someone pressed the
        exit button (``grant`` False: the button moves no relay of ours)."""
        self.authorised_at = now
        if grant:
            self.grants_unmoved += 1

    def contact(self, is_open: bool, now: float) -> str | None:
        """The contact's report: ``opened``, ``forced``, ``closed``, or None when it says
        what is known already (a retained or repeated report)."""
        if is_open == self.is_open:
            return None
        self.is_open, self.grants_unmoved = is_open, 0
        if not is_open:
            self.opened_at = None
            return "closed"
        self.opened_at = now
        if now - self.authorised_at > self.cfg.window_s and not self.held_by_mode:
            return "forced"
        self.authorised_at = NEVER  # one grant, one opening: a second one is not its
        return "opened"

    def hold(self, held: bool, now: float) -> None:
        """Whether the gate is held open by its mode (a fire), told at each re-send of the
        hold's ``open``: while it is, the door is open by our command, so it is neither
        forced nor held too long, and grants that do not move a barrier already up say
        nothing of its contact. Once the hold ends, its time open counts from then."""
        if held:
            self.grants_unmoved = 0
            if self.is_open:
                self.opened_at = now
        self.held_by_mode = held

    def held(self, now: float) -> bool | None:
        """Open longer than allowed; None while no contact report has come."""
        if self.is_open is None:
            return None
        if self.held_by_mode:
            return False
        return self.opened_at is not None and now - self.opened_at > self.cfg.held_open_s

    def stuck(self) -> bool:
        return not self.held_by_mode and self.grants_unmoved >= self.cfg.stuck_after_grants
