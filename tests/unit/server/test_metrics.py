from __future__ import annotations

import pytest

from protocol.errors import CloseCode
from server.metrics import Metrics, close_label


@pytest.mark.parametrize("code", [*CloseCode, 1001, 1002, 1006, 1011, 1015])
def test_a_known_close_code_keeps_its_label(code: int) -> None:
    assert close_label(code) == str(int(code))


@pytest.mark.parametrize("code", [0, 1004, 1016, 1234, 2999, 3000, 4000, 4999, 65535])
def test_any_other_close_code_is_labelled_other(code: int) -> None:
    assert close_label(code) == "other"


def test_closes_by_clients_choosing_codes_share_one_series() -> None:
    metrics = Metrics()
    for code in (4999, 3000, 1234, 4409, 4999):
        metrics.closed(code)

    samples = {
        sample.labels["code"]: sample.value
        for metric in metrics.closes.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    assert samples == {"other": 4.0, "4409": 1.0}
