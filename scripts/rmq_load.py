#!/usr/bin/env python3
"""RocketMQ-protocol load: SEND_MESSAGE_V2 (one message per request) or
PULL_MESSAGE, `window` requests in flight on one connection, against a
broker's remoting port. Prints msgs/s and the broker's CPU per message
(utime+stime of --pid over the run)."""
import socket, struct, sys, time, os, argparse

def binary_header(code, opaque, ext, flag=0):
    h = struct.pack(">hbhii", code, 12, 317, opaque, flag) + struct.pack(">i", 0)
    f = b""
    for k, v in ext:
        k = k.encode(); v = v.encode()
        f += struct.pack(">h", len(k)) + k + struct.pack(">i", len(v)) + v
    return h + struct.pack(">i", len(f)) + f

def frame(header, body=b""):
    return struct.pack(">iI", 4 + len(header) + len(body), (1 << 24) | len(header)) + header + body

def cpu(pid):
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

def recv_exact(s, n, buf):
    while len(buf) < n:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise SystemExit("connection closed")
        buf += chunk
    return buf

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--mode", choices=["send", "pull"], default="send")
    ap.add_argument("--topic", default="RmqBench")
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    a = ap.parse_args()
    s = socket.create_connection(("127.0.0.1", a.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = b"x" * a.size
    done = msgs = 0
    bad = 0
    c0, t0 = cpu(a.pid), time.perf_counter()
    buf = bytearray()
    offsets = {}
    if a.mode == "send":
        f = frame(binary_header(310, 1, [("a", "PG"), ("b", a.topic), ("e", "-1"), ("f", "0"),
                                          ("g", str(int(time.time() * 1000))), ("h", "0")]), body)
        batch = f * a.window
        while done < a.count:
            s.sendall(batch)
            for _ in range(a.window):
                buf = recv_exact(s, 4, buf)
                n = struct.unpack(">i", buf[:4])[0]
                buf = recv_exact(s, 4 + n, buf)
                hl = struct.unpack(">I", buf[4:8])[0] & 0xFFFFFF
                code = struct.unpack(">h", buf[8:10])[0]
                bad += code != 0
                del buf[: 4 + n]
            done += a.window
        msgs = done
    else:
        q = 0
        qs = {}
        while msgs < a.count:
            reqs = b""
            for i in range(a.window):
                qid = (q + i) % 4
                reqs += frame(binary_header(11, 1, [("consumerGroup", "BG"), ("topic", a.topic),
                    ("queueId", str(qid)), ("queueOffset", str(qs.get(qid, 0))), ("maxMsgNums", "32"),
                    ("sysFlag", "0"), ("subscription", "*")]))
            s.sendall(reqs)
            for i in range(a.window):
                qid = (q + i) % 4
                buf = recv_exact(s, 4, buf)
                n = struct.unpack(">i", buf[:4])[0]
                buf = recv_exact(s, 4 + n, buf)
                hl = struct.unpack(">I", buf[4:8])[0] & 0xFFFFFF
                hdr = bytes(buf[8: 8 + hl])
                code = struct.unpack(">h", hdr[:2])[0]
                # ext fields
                p = 2 + 1 + 2 + 4 + 4
                rl = struct.unpack(">i", hdr[p:p + 4])[0]; p += 4 + max(rl, 0)
                el = struct.unpack(">i", hdr[p:p + 4])[0]; p += 4
                ext = {}
                end = p + el
                while p < end:
                    kl = struct.unpack(">h", hdr[p:p + 2])[0]; k = hdr[p + 2:p + 2 + kl].decode(); p += 2 + kl
                    vl = struct.unpack(">i", hdr[p:p + 4])[0]; v = hdr[p + 4:p + 4 + vl].decode(); p += 4 + vl
                    ext[k] = v
                b = bytes(buf[8 + hl: 4 + n])
                cnt = 0; off = 0
                while off < len(b):
                    cnt += 1
                    off += struct.unpack(">i", b[off:off + 4])[0]
                msgs += cnt
                if "nextBeginOffset" in ext:
                    qs[qid] = int(ext["nextBeginOffset"])
                del buf[: 4 + n]
                if code == 19 and all(qs.get(x, -1) >= 0 for x in range(4)) and cnt == 0:
                    pass
            q += a.window
            if all(v == 0 for v in []):
                pass
            if msgs == 0 and q > 1000:
                raise SystemExit("nothing to pull")
    t1, c1 = time.perf_counter(), cpu(a.pid)
    dt = t1 - t0
    print(f"mode={a.mode} msgs={msgs} secs={dt:.2f} msgs_per_sec={msgs/dt:.0f} "
          f"broker_cpu_us_per_msg={(c1-c0)/msgs*1e6:.2f} errors={bad}")

main()
