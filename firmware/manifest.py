# MicroPython frozen manifest for the ESP32 image (MicroPython v1.23+, ESP-IDF 5.x):
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=<this repo>/firmware/manifest.py
# Frozen modules run from flash: their bytecode, constants and names leave the heap
# (docs/firmware.md "Memory"). main.py stays a file on the board's flash (the loader picks
# the OTA slot before anything is imported), and board_sim.py is for the unix port only.
# An OTA slot (ota/a, ota/b) comes before the frozen modules on sys.path, so an update
# still replaces any of them; the frozen copy is the factory image.
include("$(PORT_DIR)/boards/manifest.py")

for name in ("alerting", "alerts", "app", "battery", "board", "board_esp32", "cellular", "cfgset",
             "clockfloor", "config", "edges", "gesture", "gps", "hmac256", "modem", "monotonic",
             "mqtt", "ota", "otadl", "otastate", "outbox", "patterns", "portal", "proto", "remote",
             "rsa", "safemode", "sms", "startup"):
    module(name + ".py")
