# ESP32 `select` for the stand-in: poll() over the stand-in sockets, with the loop's wait
# being where scheduled IRQs run and the test's commands arrive.
import harness as _h

_s = _h._select
POLLIN = _s.POLLIN
POLLOUT = _s.POLLOUT
POLLERR = _s.POLLERR
POLLHUP = _s.POLLHUP


def _real_of(o):
    return o.s if hasattr(o, "poll_filter") else o


class poll:
    def __init__(self):
        self.p = _s.poll()
        self.p.register(_h._in, POLLIN)
        self.objs = {}          # id(real) -> [object, mask]

    def register(self, o, mask=POLLIN | POLLOUT):
        r = _real_of(o)
        self.objs[id(r)] = [o, mask]
        self.p.register(r, mask)

    def modify(self, o, mask):
        r = _real_of(o)
        self.objs[id(r)][1] = mask
        self.p.modify(r, mask)

    def unregister(self, o):
        r = _real_of(o)
        if self.objs.pop(id(r), None) is not None:
            self.p.unregister(r)

    def poll(self, timeout=-1):
        end = None if timeout < 0 else _h.host_ms() + timeout
        while True:
            _h.yield_point()
            out = []
            for ent in self.objs.values():
                o = ent[0]
                if hasattr(o, "poll_filter"):
                    # Harness-made conditions (refused, closed) need no real event.
                    f = o.poll_filter(0) & (POLLERR | POLLHUP)
                    if f:
                        out.append((o, f))
            left = 10 if end is None else max(0, min(10, end - _h.host_ms()))
            busy = False
            for r, f in self.p.poll(0 if out else left):
                ent = self.objs.get(id(r))
                if ent is None:
                    continue            # the control channel: handled by yield_point
                o = ent[0]
                if hasattr(o, "poll_filter"):
                    g = o.poll_filter(f) & (ent[1] | POLLERR | POLLHUP)
                    if not g:
                        busy = True
                        continue
                    f = g
                out.append((o, f))
            if out or (end is not None and _h.host_ms() >= end):
                return out
            if busy:
                # Ready underneath but held back by the stand-in (radio, connect delay).
                _h._poll.poll(2)

    def ipoll(self, timeout=-1, flags=0):
        return iter(self.poll(timeout))
