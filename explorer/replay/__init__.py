"""Replay: re-run search strategies on the learning curves a finished search recorded.

``python -m explorer.replay runs/<name>`` replays random search, TPE, TPE + ASHA and TPE + ASHA
with multi-fidelity pre-training, each over several seeds, on the configurations the search
trained (``table``), with the real searcher, scheduler and pre-training stage on a simulated
clock (``simulate``), in seconds and with no training; and the search as it was run, to show
how closely the replay reproduces it. Per strategy: the device-seconds spent, the epochs
trained, and how good the recipe it would select is (``strategies``).
"""

from explorer.replay.simulate import NotReplayable, Outcome, replay_once
from explorer.replay.strategies import STRATEGIES, summarise
from explorer.replay.table import Recorded, load_recorded

__all__ = ["STRATEGIES", "NotReplayable", "Outcome", "Recorded", "load_recorded",
           "replay_once", "summarise"]
