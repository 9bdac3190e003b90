"""When to restart a process of `make run` that exited, and when to stop trying.

Like Kubernetes' restart policy: a process that exits is started again after a delay that
doubles with each exit that came soon after its start (1 s, 2 s, 4 s, ... up to a cap), and
drops back to the first delay once a run lasted. A process that keeps dying right after it
starts (a bad setting, a port taken) is given up on after `give_up_after` such exits in a row:
restarting it forever would only hide the reason, which its log says.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class GiveUpError(RuntimeError):
    """A process failed `give_up_after` times in a row within `fast_seconds` of its start."""


@dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = 1.0
    max_delay: float = 30.0
    # An exit this soon after the start counts as a failure to start.
    fast_seconds: float = 10.0
    give_up_after: int = 5


@dataclass
class Restarts:
    """The restart history of one process."""

    name: str
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    fast_exits: int = 0
    count: int = 0

    def delay_after_exit(self, ran_seconds: float) -> float:
        """Seconds to wait before starting the process again; raises GiveUpError when it
        keeps failing at start."""
        policy = self.policy
        if ran_seconds < policy.fast_seconds:
            self.fast_exits += 1
        else:
            self.fast_exits = 0
        if self.fast_exits >= policy.give_up_after:
            raise GiveUpError(
                f"{self.name} exited {self.fast_exits} times in a row within "
                f"{policy.fast_seconds:g} s of starting; giving up (its log says why)"
            )
        self.count += 1
        return min(policy.max_delay, policy.first_delay * float(2 ** max(self.fast_exits - 1, 0)))
