import pytest

from x0node.daemon.config import ConfigError
from x0node.telemetry import service


def test_defaults_filled():
    cfg = service.validate_config({})
    assert cfg["xdp_mode"] == "auto" and cfg["epsilon"] == 1.0 and cfg["interval_s"] == 5.0


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"xdp_mode": "fast"}, "xdp_mode"),
        ({"interval_s": 0}, "interval_s"),
        ({"interval_s": True}, "interval_s"),
        ({"epsilon": -1}, "epsilon"),
        ({"epsilon": "x"}, "epsilon"),
        ({"peers_max": 100000}, "peers_max"),
        ({"xdp": "yes"}, "xdp"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_values_name_the_key(section, key):
    with pytest.raises(ConfigError) as exc:
        service.validate_config(section)
    assert exc.value.key == key


def test_epsilon_zero_means_exact():
    svc = service.TelemetryService({"epsilon": 0})
    assert svc.epsilon is None
    assert svc.snapshot()["bpf"] is False


async def test_runs_on_without_bpf_and_says_why(monkeypatch, tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from x0node.daemon.bus import EventBus
    from x0node.daemon.services import ServiceContext
    from x0node.telemetry import libbpf

    monkeypatch.setattr(libbpf, "available", lambda: (False, "kernel has no BTF"))
    reg = CollectorRegistry()
    ctx = ServiceContext(router=None, config=None, data_dir=tmp_path, registry=reg, bus=EventBus(),
                         interfaces=["eth1"], node_id="n", mesh_addr="::1", provider=None)
    svc = service.TelemetryService({"interval_s": 0.2})
    await svc.start(ctx)
    try:
        st = svc.status()
        assert st["bpf"] is False and st["reason"] == "BPF unavailable: kernel has no BTF"
        assert svc.snapshot()["interfaces"] == {} and ctx.extras["telemetry"] is svc
        assert "x0node_telemetry_bpf_available 0.0" in generate_latest(reg).decode()
        assert [e.event["kind"] for e in ctx.bus.since(0)] == ["started"]
    finally:
        await svc.stop()
    assert "telemetry" not in ctx.extras
    assert "x0node_telemetry_bpf_available" not in generate_latest(reg).decode()
