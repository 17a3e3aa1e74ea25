"""The device registry: buttons, their secrets and holders, and the boot numbers they used."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields

from ..models import Device
from ..secretbox import PREFIX, SecretBox, is_sealed
from .core import StoreCore

DEVICE_COLS = [f.name for f in fields(Device)]
SEALED_LIKE = PREFIX + "%"


def _highest_boot(alert_ids: list[tuple]) -> int:
    """The highest boot number among alert ids `<dev>:<boot>:<seq>`."""
    return max((int(i.rsplit(":", 2)[1]) for (i,) in alert_ids), default=0)


class DevicesMixin(StoreCore):
    # Seals device secrets at rest (gateway/secretbox.py); open_store sets it from the key
    # file. None (a store opened without a key, as in tests) keeps them as given.
    secret_box: SecretBox | None = None

    def _sealed(self, secret: str) -> str:
        return self.secret_box.seal(secret) if self.secret_box is not None else secret

    def _from_row(self, row: tuple) -> Device:
        d = Device(*row)
        if self.secret_box is not None:
            d.secret = self.secret_box.open(d.secret)
        return d

    def add_device(self, device: Device) -> None:
        self.add_devices([device])

    def add_devices(self, devices: list[Device]) -> None:
        cols = ", ".join(DEVICE_COLS)
        marks = ", ".join("?" * len(DEVICE_COLS))
        with self._tx() as cur:
            for device in devices:
                values = {c: getattr(device, c) for c in DEVICE_COLS}
                values["secret"] = self._sealed(device.secret)
                self._exec(cur, f"INSERT INTO devices ({cols}) VALUES ({marks})", list(values.values()))
            self._bump_registry(cur)

    def seal_device_secrets(self) -> int:
        """Seal the secrets still stored in plain text (rows from before sealing); how many."""
        if self.secret_box is None:
            return 0
        rows = self._rows("SELECT id, secret FROM devices WHERE secret NOT LIKE ?", (SEALED_LIKE,))
        if not rows:
            return 0
        with self._tx() as cur:
            for dev, secret in rows:
                if not is_sealed(secret):
                    self._exec(cur, "UPDATE devices SET secret = ? WHERE id = ? AND secret = ?",
                               (self.secret_box.seal(secret), dev, secret))
        return len(rows)

    def hash_plain_mqtt_passwords(self, hasher: Callable[[str], str], hashed_like: str) -> int:
        """Replace MQTT passwords still stored in plain text (rows from before hashing) by
        `hasher`'s hash; `hashed_like` is the LIKE pattern of a stored hash. How many."""
        rows = self._rows("SELECT id, mqtt_password FROM devices WHERE mqtt_password NOT LIKE ?", (hashed_like,))
        if not rows:
            return 0
        with self._tx() as cur:
            for dev, plain in rows:
                self._exec(cur, "UPDATE devices SET mqtt_password = ? WHERE id = ? AND mqtt_password = ?",
                           (hasher(plain), dev, plain))
        return len(rows)

    def has_sealed_secrets(self) -> bool:
        return bool(self._rows("SELECT 1 FROM devices WHERE secret LIKE ? LIMIT 1", (SEALED_LIKE,)))

    def update_device(self, dev: str, **changes) -> bool:
        unknown = set(changes) - set(DEVICE_COLS)
        if unknown:
            raise ValueError(f"no device fields {sorted(unknown)}")
        if "secret" in changes:
            changes["secret"] = self._sealed(changes["secret"])
        sets = ", ".join(f"{k} = ?" for k in changes)
        with self._tx() as cur:
            n = self._exec(cur, f"UPDATE devices SET {sets} WHERE id = ?", [*changes.values(), dev]).rowcount
            self._bump_registry(cur)
            return n > 0

    def remove_device(self, dev: str) -> bool:
        with self._tx() as cur:
            n = self._exec(cur, "DELETE FROM devices WHERE id = ?", (dev,)).rowcount
            self._exec(cur, "DELETE FROM device_health WHERE dev = ?", (dev,))
            self._bump_registry(cur)
            return n > 0

    def device_by_sim(self, msisdn: str) -> Device | None:
        """The device whose SIM has this E.164 number."""
        rows = self._rows(f"SELECT {', '.join(DEVICE_COLS)} FROM devices WHERE sim = ?", (msisdn,))
        return self._from_row(rows[0]) if rows else None

    def set_device_sim(self, dev: str, msisdn: str | None) -> bool:
        """Register (None: clear) the button's SIM. Raises ValueError when another device has
        that number: an SMS must name one device."""
        holder = self.device_by_sim(msisdn) if msisdn else None
        if holder is not None and holder.id != dev:
            raise ValueError(f"SIM {msisdn} is registered for {holder.id}")
        return self.update_device(dev, sim=msisdn)

    def _device(self, cur, dev: str) -> Device | None:
        row = self._exec(cur, f"SELECT {', '.join(DEVICE_COLS)} FROM devices WHERE id = ?", (dev,)).fetchone()
        return self._from_row(row) if row else None

    def get_device(self, dev: str) -> Device | None:
        rows = self._rows(f"SELECT {', '.join(DEVICE_COLS)} FROM devices WHERE id = ?", (dev,))
        return self._from_row(rows[0]) if rows else None

    def list_devices(self) -> list[Device]:
        rows = self._rows(f"SELECT {', '.join(DEVICE_COLS)} FROM devices ORDER BY id")
        return [self._from_row(r) for r in rows]

    def devices_by_id(self, devs: list[str]) -> dict[str, Device]:
        """The registered devices among `devs`, by id."""
        devs = list(dict.fromkeys(devs))
        if not devs:
            return {}
        marks = ", ".join("?" * len(devs))
        rows = self._rows(f"SELECT {', '.join(DEVICE_COLS)} FROM devices WHERE id IN ({marks})", devs)
        return {r[0]: self._from_row(r) for r in rows}

    def _max_boot(self, cur, dev: str) -> int:
        return _highest_boot(self._exec(cur, "SELECT id FROM alerts WHERE dev = ?", (dev,)).fetchall())

    def boot_floor(self, dev: str) -> int:
        """The highest boot number this device has used: a re-flashed button starts above it."""
        return _highest_boot(self._rows("SELECT id FROM alerts WHERE dev = ?", (dev,)))

    def last_alerts(self) -> dict[str, int]:
        """Each device's latest alert, received time in ms."""
        return {d: t for d, t in self._rows("SELECT dev, MAX(received_ms) FROM alerts GROUP BY dev")}
