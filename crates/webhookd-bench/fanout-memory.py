# One 1 MiB event to 500 webhooks (then four at once): peak RSS of webhookd above idle, and RSS
# a minute later. Usage: python3 crates/webhookd-bench/fanout-memory.py target/release/webhookd
import json, os, subprocess, sys, tempfile, threading, time, urllib.request, http.server, socketserver

binary = sys.argv[1]
work = tempfile.mkdtemp()
received = [0]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers['content-length']); self.rfile.read(n)
        received[0] += 1
        self.send_response(200); self.send_header('content-length', '0'); self.end_headers()
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
srv = S(('127.0.0.1', 0), H); threading.Thread(target=srv.serve_forever, daemon=True).start()
port = srv.server_address[1]
proc = subprocess.Popen([binary, 'serve', '--listen', '127.0.0.1:18181', '--database', f'sqlite://{work}/w.db', '--allow-private-targets'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
key = proc.stdout.readline().split()[-1]
time.sleep(1)
def call(method, path, body=None):
    req = urllib.request.Request('http://127.0.0.1:18181/api/v1' + path, method=method, data=json.dumps(body).encode() if body is not None else None, headers={'Authorization': 'Bearer ' + key, 'content-type': 'application/json'})
    with urllib.request.urlopen(req) as r: return json.loads(r.read())
def rss():
    for line in open(f'/proc/{proc.pid}/status'):
        if line.startswith('VmRSS'): return int(line.split()[1]) / 1024
def hwm():
    for line in open(f'/proc/{proc.pid}/status'):
        if line.startswith('VmHWM'): return int(line.split()[1]) / 1024
agent = call('POST', '/agents', {'name': 'a'})['data']['id']
for i in range(500):
    call('POST', f'/agents/{agent}/webhooks', {'name': f'h{i}', 'webhook_url': f'http://127.0.0.1:{port}/h', 'events': ['call.completed']})
time.sleep(2)
idle = rss()
payload = {'transcript': 'x' * (1024 * 1024 - 200)}
def send(n):
    call('POST', f'/agents/{agent}/events', {'event': 'call.completed', 'data': payload})
peak = idle
def run(events, expect):
    global peak
    ts = [threading.Thread(target=send, args=(i,)) for i in range(events)]
    [t.start() for t in ts]
    while received[0] < expect:
        peak = max(peak, rss()); time.sleep(0.02)
    [t.join() for t in ts]
run(1, 500)
one = hwm()
print(json.dumps({'idle_mb': round(idle, 1), 'one_event_peak_mb': round(one, 1), 'one_event_above_idle_mb': round(one - idle, 1)}))
run(4, 2500)
four = hwm()
after = rss()
time.sleep(60)
later = rss()
print(json.dumps({'four_events_peak_mb': round(four, 1), 'four_above_idle_mb': round(four - idle, 1), 'rss_after_mb': round(after, 1), 'rss_a_minute_later_mb': round(later, 1)}))
proc.terminate(); proc.wait()
