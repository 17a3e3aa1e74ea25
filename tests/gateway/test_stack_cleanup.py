"""A stack whose gateway never comes up stops what it did start: a broker left behind by a
failed fixture outlived its test and held a port and a core through the rest of the run."""
from __future__ import annotations

import pytest

from simulator.stack import Stack
from tests.gateway.test_gateway_support import custom_stack


def test_a_stack_whose_gateway_never_comes_up_leaves_no_process(tmp_path, monkeypatch):
    started: list = []
    real = Stack.start_broker

    def start_broker(self: Stack) -> None:
        real(self)
        started.append((self, self.broker))

    def never_healthy(self: Stack, timeout: float = 30.0) -> None:
        raise TimeoutError("gateway not healthy")

    monkeypatch.setattr(Stack, "start_broker", start_broker)
    monkeypatch.setattr(Stack, "wait_healthy", never_healthy)
    with pytest.raises(TimeoutError):
        custom_stack(tmp_path / "state")
    ((stack, broker),) = started
    assert broker.poll() is not None and stack.broker is None and not stack.gateways
