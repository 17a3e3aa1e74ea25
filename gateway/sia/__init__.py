"""SIA DC-09 (ANSI/SIA DC-09-2013): the alarm-receiving centres' IP reporting protocol.

`codec` frames, checks and (with AES-CBC) encrypts messages and reads the receiver's
replies; it does no I/O. The sink that sends them is gateway/sinks/sia_dc09.py.
"""
