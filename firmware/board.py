# Picks the board layer. The contract both boards follow is declared in board.pyi: a
# typing stub that pyright checks each board against, and that costs the device no RAM.


def make():
    # The ESP32 port (or its stand-in under tests/firmware/esp32/) has an `esp32` module;
    # the plain unix port is the simulator.
    try:
        import esp32  # noqa: F401
    except ImportError:
        import board_sim
        return board_sim.Board()
    import board_esp32
    return board_esp32.Board()
