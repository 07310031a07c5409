"""Length-prefixed frames: a 4-byte big-endian length, then the payload.

The parent and a worker W exchange marshal'd tuples this way (both trusted); the judge's links
(to W and to the candidate) carry codec payloads (codec.py) in the same frames, read with a
bound on the length (`limit`), so a hostile writer can only make a frame be refused. On the
judge <-> candidate socket every frame starts with MARK, and `Resync` skips whatever junk a
candidate writes between frames (it cannot make the judge mistake junk for a frame boundary).
"""
import array, marshal, os, select, socket, struct
from builtins import len, memoryview, min  # bound now: a program that patches builtins keeps its channel

HEAD = struct.Struct(">I")
MAX_FRAME = 64 << 20
MARK = b"\xfeCoS"
CHUNK = 1 << 16  # per read: a pipe's size; a bigger buffer is an mmap + mremap + munmap per read


class FrameError(ValueError):
    """A frame longer than the reader allows."""


def pack(payload: bytes) -> bytes:
    return HEAD.pack(len(payload)) + payload


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:  # (someone set O_NONBLOCK on a description shared with it)
            select.select([], [fd], [])


def read_exact(fd, n):
    """Exactly n bytes from a blocking fd, or None at end of file."""
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, CHUNK))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read_frame(fd, limit=MAX_FRAME):
    """The next payload from a blocking fd; None at end of file."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    n = HEAD.unpack(head)[0]
    if n > limit:
        raise FrameError(f"frame of {n} bytes > {limit}")
    return read_exact(fd, n)


def write_frame(fd, payload):
    write_all(fd, pack(payload))


def pack_marked(payload: bytes) -> bytes:
    return MARK + HEAD.pack(len(payload)) + payload


class Resync:
    """MARK'ed frames from a blocking fd; bytes that are not one are skipped. `next()` -> the
    next payload, or None at end of file."""

    def __init__(self, fd, limit=MAX_FRAME):
        self.fd = fd
        self.limit = limit
        self.buf = b""

    def _fill(self):
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
                break
            except BlockingIOError:  # (someone set O_NONBLOCK on a description shared with it)
                select.select([self.fd], [], [])
        self.buf += data
        return bool(data)

    def next(self):
        while True:
            k = self.buf.find(MARK)
            if k < 0:
                self.buf = self.buf[-3:]
                if not self._fill():
                    return None
                continue
            self.buf = self.buf[k:]
            if len(self.buf) < 8:
                if not self._fill():
                    return None
                continue
            n = HEAD.unpack_from(self.buf, 4)[0]
            if n > self.limit:
                self.buf = self.buf[4:]
                continue
            if len(self.buf) < 8 + n:
                if not self._fill():
                    return None
                continue
            payload = self.buf[8:8 + n]
            self.buf = self.buf[8 + n:]
            return payload


def send_with_fds(sock, data, fds):
    """Write all of `data` to a connected unix stream socket, `fds` riding on its first byte."""
    view = memoryview(data)
    sent = sock.sendmsg([view], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]) if fds else 0
    view = view[sent:]
    while view:
        view = view[sock.send(view):]


class FdReader:
    """Frames and the file descriptors sent with them (send_with_fds) from a blocking unix stream
    socket: `next()` -> the next payload (None at EOF); `take_fds(n)` -> the n descriptors that
    came with it (they ride on a frame's first byte, so they are here once its payload is)."""

    def __init__(self, sock, limit=MAX_FRAME):
        self.sock = sock
        self.limit = limit
        self.buf = b""
        self.fds = []

    def _fill(self):
        data, anc, _, _ = self.sock.recvmsg(CHUNK, socket.CMSG_SPACE(16 * 4))
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(raw[:len(raw) - len(raw) % 4])
                self.fds.extend(got)
        self.buf += data
        return bool(data)

    def next(self):
        while len(self.buf) < 4 or len(self.buf) < 4 + HEAD.unpack_from(self.buf)[0]:
            if len(self.buf) >= 4 and HEAD.unpack_from(self.buf)[0] > self.limit:
                raise FrameError(f"frame of {HEAD.unpack_from(self.buf)[0]} bytes > {self.limit}")
            if not self._fill():
                return None
        n = HEAD.unpack_from(self.buf)[0]
        payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return payload

    def take_fds(self, n):
        """The next n descriptors received (fewer if the peer sent fewer)."""
        fds, self.fds = self.fds[:n], self.fds[n:]
        return fds


def read_obj(fd):
    """One marshal'd object from a trusted peer; None at end of file."""
    payload = read_frame(fd)
    return None if payload is None else marshal.loads(payload)


def write_obj(fd, obj):
    write_frame(fd, marshal.dumps(obj))


class Reader:
    """Frames from a non-blocking fd, as they complete: `poll()` -> [payload, ...] + [None] at EOF."""

    def __init__(self, fd, limit=MAX_FRAME):
        self.fd = fd
        self.limit = limit
        self.buf = b""
        self.eof = False

    def poll(self):
        try:
            data = os.read(self.fd, CHUNK)
        except BlockingIOError:
            return []
        self.buf += data
        out = []
        while len(self.buf) >= 4:
            n = HEAD.unpack_from(self.buf)[0]
            if n > self.limit:
                raise FrameError(f"frame of {n} bytes > {self.limit}")
            if len(self.buf) < 4 + n:
                break
            out.append(self.buf[4:4 + n])
            self.buf = self.buf[4 + n:]
        if not data:
            self.eof = True
            out.append(None)
        return out
