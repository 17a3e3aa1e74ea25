# LED and buzzer patterns a person can tell apart without a manual.
# Durations in ms, alternating on/off, starting with "on"; LED patterns repeat,
# buzzer patterns play once when the state is entered.
LED = {
    "idle": (30, 4970),                     # heartbeat blip: the button is alive
    "sending": (100, 100),                  # fast flicker: calling
    "received": (500, 500),                 # slow blink: police system has it
    "dispatched": (150, 150, 150, 1050),    # double blink: help is coming
    "on_scene": (1000, 0),                  # steady: officer on scene
    "failed": (100, 100, 100, 100, 100, 100, 600, 1400),  # triple + dash: not through yet
    "offline": (50, 2950),
    "low_battery": (50, 150, 50, 9750),
    "config_error": (1000, 200, 200, 200),  # long-short-short: fix config.json
    "cancel_confirm": (50, 50),             # very fast: press once more to cancel
    "safe_mode": (200, 200, 200, 1400),     # double blink: no app, no watchdog (USB)
    "factory_reset": (50, 50, 50, 850),     # armed: a press now clears the outbox
    "locate": (300, 100, 300, 300),         # "here I am" (a remote locate command)
}

BUZZER = {
    "off": (),
    "sending": (60,),
    "received": (80, 80, 80),
    "dispatched": (80, 80, 80, 80, 80),
    "on_scene": (600,),
    "failed": (400, 200, 400),
    "cancelled": (300, 100, 60),
    "config_error": (1000,),
    "cancel_confirm": (100, 100, 100),      # two beeps: "press again to cancel"
    "safe_mode": (100,),
    "factory_reset": (100, 100, 100, 100, 100),
    "locate": (150, 850) * 30,              # a chirp a second for 30 s (never when silent)
}
