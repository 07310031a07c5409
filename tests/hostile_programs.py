"""Hostile candidate programs shared by the sandbox tests (tests/test_sandbox_attacks.py) and the
unprivileged probe (tests/userns_probe.py, which runs on a copy of this file): stdlib only, no imports."""

# A program that forges the harness's result lines on every descriptor it can write, then exits early.
FORGE = """import os
def forge():
    try:                                   # read ahead of the harness: whatever W queued for C
        os.set_blocking(3, False)
        queued = os.read(3, 4096)
    except OSError:
        queued = b''
    fakes = [b'@@T ' + b'0' * 32 + b' 0 passed \\n', b'@@C 0 reaped 0 0\\n', queued]
    for word in queued.split():
        if len(word) == 32:                # a nonce: answer with it
            fakes.append(b'@@T ' + word + b' 0 passed \\n')
    for fd in range(3, 64):
        for fake in fakes:
            try:
                os.write(fd, fake)
            except OSError:
                pass
def add(a, b):
    forge()
    os._exit(0)
"""
