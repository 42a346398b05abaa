"""A stand-in for the original VHG `adaptation.commons` Celery tasks.

The mixed-deployment tests of vhg-worker (cmd/vhg-worker/mixed_test.go) run
it as the "original Python worker" sharing a queue with Go workers:

  /usr/bin/python3 -m celery -A original worker -Q QUEUE ...

It was written for those tests from the behaviour described in DESIGN.md
and the trace in reference/captures (py525-seed-workflow.trace.jsonl), not
copied from the original project. What it keeps from the original:

  - the task names, signatures, context keys and types, and the canvas of
    encode_workflow (no errbacks: the original sent no FAILURE notice);
  - download_file stores the source at os.path.join(tempfile.mkdtemp(),
    context["id"]), a fresh directory under this worker's temp dir, and puts
    that path in context["original_file"];
  - the master playlist is appended to without any lock:
    add_playlist_header appends "#EXTM3U", add_playlist_info one entry,
    add_playlist_footer the end;
  - notify publishes PARTIAL / COMPLETE on the status queue named after
    main_task_id, as Celery 3.x/4.x's amqp result backend did for
    update_state (this Celery has no amqp backend any more, so it is
    published here with kombu, to the same exchange, queue and format);
  - transcode encodes at the original's hard-coded 100k video bitrate.

What it does differently: every command is an argv list run without a
shell (the original built shell strings from URLs), the download uses
urllib instead of a shell command, sizes come from ffprobe instead of
mediainfo, and DASH is made by ffmpeg's dash muxer (MP4Box is not packaged
on Debian). Master playlist entries are written in their valid form
(RESOLUTION=WxH and a URI line, no ENDLIST in the master) unless
VHG_ORIGINAL_PLAYLIST=legacy, which writes the original's exact lines:
RESOLUTION=<the variant playlist's path>, no URI line, and
"#EXT-X-ENDLIST" appended by the footer.

Environment: CELERY_BROKER_URL, CELERY_RESULT_BACKEND and INTEROP_QUEUE as
for interop.py; VHG_OUTPUT_DIR (where encode_workflow puts folder_out),
VHG_RENDITIONS (height:kbps pairs, default "144:100,240:200"),
VHG_PRESET (x264 preset, default the encoder's), VHG_ORIGINAL_PLAYLIST.
"""
import glob
import json
import math
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid

from celery import Celery, chain, chord
from kombu import Exchange, Queue

app = Celery(
    "original",
    broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    task_default_queue=os.environ.get("INTEROP_QUEUE", "celery"),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

OUTPUT_DIR = os.environ.get("VHG_OUTPUT_DIR", "/srv/vhg/out")
SEGTIME = 4
LEGACY_PLAYLIST = os.environ.get("VHG_ORIGINAL_PLAYLIST") == "legacy"


def renditions():
    out = []
    for part in os.environ.get("VHG_RENDITIONS", "144:100,240:200").split(","):
        height, kbps = part.split(":")
        out.append((int(height), int(kbps)))
    return out


def run(argv):
    """Runs a command given as an argv list, never through a shell."""
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def dims(context):
    return "%dx%d" % (context["target_width"], context["target_height"])


def hls_folder(context):
    return os.path.join(context["folder_out"], "hls")


def master_playlist(context):
    return os.path.join(hls_folder(context), "playlist.m3u8")


def variant_playlist(context):
    return os.path.join(hls_folder(context), dims(context), "playlist.m3u8")


def transcoded_file(context):
    return os.path.join(context["folder_out"], "encoding", dims(context) + ".mp4")


def dash_mpd(context):
    return os.path.join(context["folder_out"], "dash", "playlist.mpd")


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


@app.task(name="adaptation.commons.download_file")
def download_file(context):
    path = os.path.join(tempfile.mkdtemp(), context["id"])
    try:
        with urllib.request.urlopen(context["url"], timeout=60) as response, open(path, "wb") as f:
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                f.write(chunk)
    except urllib.error.HTTPError as exc:
        # urllib's HTTPError holds the response and cannot be pickled back
        # from a prefork child: raise what a failed download command gave.
        raise OSError("GET %s: %s %s" % (context["url"], exc.code, exc.reason)) from None
    context["original_file"] = path
    return context


@app.task(name="adaptation.commons.get_video_size")
def get_video_size(context):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "V:0", "-show_entries", "stream=width,height",
         "-of", "json", "file:" + context["original_file"]],
        check=True, stdin=subprocess.DEVNULL, capture_output=True)
    streams = json.loads(out.stdout).get("streams") or []
    if not streams:
        raise AssertionError("failed to read video info from " + context["original_file"])
    context["track_width"] = streams[0]["width"]
    context["track_height"] = streams[0]["height"]
    return context


@app.task(name="adaptation.commons.add_playlist_header")
def add_playlist_header(context):
    os.makedirs(hls_folder(context), exist_ok=True)
    append(master_playlist(context), "#EXTM3U\n")
    return context


@app.task(name="adaptation.commons.compute_target_size")
def compute_target_size(context, target_height):
    context["target_height"] = target_height
    context["target_width"] = math.trunc(float(target_height) / context["track_height"] * context["track_width"] / 2) * 2
    return context


@app.task(name="adaptation.commons.transcode")
def transcode(context, bitrate):
    context["bitrate"] = bitrate
    out = transcoded_file(context)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    argv = ["ffmpeg", "-nostdin", "-y", "-i", "file:" + context["original_file"],
            "-c:v", "libx264", "-profile:v", "main", "-level", "3.1", "-b:v", "100k",
            "-vf", "scale=%d:%d" % (context["target_width"], context["target_height"]),
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-force_key_frames", "expr:gte(t,n_forced*%d)" % SEGTIME]
    if os.environ.get("VHG_PRESET"):
        argv += ["-preset", os.environ["VHG_PRESET"]]
    run(argv + ["file:" + out])
    return context


@app.task(name="adaptation.commons.chunk_hls")
def chunk_hls(context, segtime=4):
    context["segtime"] = segtime
    folder = os.path.dirname(variant_playlist(context))
    os.makedirs(folder, exist_ok=True)
    run(["ffmpeg", "-nostdin", "-y", "-i", "file:" + transcoded_file(context), "-map", "0", "-c", "copy",
         "-bsf:v", "h264_mp4toannexb", "-f", "segment", "-segment_format", "mpegts",
         "-segment_time", str(segtime), "-segment_list", variant_playlist(context),
         "-segment_list_type", "m3u8", os.path.join(folder, "chunks_name%03d.ts")])
    return context


@app.task(name="adaptation.commons.add_playlist_info")
def add_playlist_info(context):
    bandwidth = context["bitrate"] * 1000
    if LEGACY_PLAYLIST:
        entry = "#EXT-X-STREAM-INF:PROGRAM-ID=1,BANDWIDTH=%d,RESOLUTION=%s\n" % (bandwidth, variant_playlist(context))
    else:
        entry = "#EXT-X-STREAM-INF:BANDWIDTH=%d,RESOLUTION=%s\n%s/playlist.m3u8\n" % (bandwidth, dims(context), dims(context))
    append(master_playlist(context), entry)
    return context


@app.task(name="adaptation.commons.add_playlist_footer")
def add_playlist_footer(contexts):
    if LEGACY_PLAYLIST:
        append(master_playlist(contexts[0]), "#EXT-X-ENDLIST\n")
    return contexts[0]


def has_audio(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries", "stream=index",
                          "-of", "json", "file:" + path], check=True, stdin=subprocess.DEVNULL, capture_output=True)
    return bool(json.loads(out.stdout).get("streams"))


@app.task(name="adaptation.commons.chunk_dash")
def chunk_dash(context):
    encoding = os.path.join(context["folder_out"], "encoding")
    files = [f for f in glob.glob(os.path.join(encoding, "*.mp4")) if re.fullmatch(r"[0-9]+x[0-9]+\.mp4", os.path.basename(f))]
    files.sort(key=lambda f: tuple(reversed([int(n) for n in os.path.basename(f)[:-4].split("x")])))
    mpd = dash_mpd(context)
    os.makedirs(os.path.dirname(mpd), exist_ok=True)
    argv = ["ffmpeg", "-nostdin", "-y"]
    for f in files:
        argv += ["-i", "file:" + f]
    for i in range(len(files)):
        argv += ["-map", "%d:v:0" % i]
    sets = "id=0,streams=v"
    if has_audio(files[0]):
        argv += ["-map", "0:a:0"]
        sets += " id=1,streams=a"
    run(argv + ["-c", "copy", "-f", "dash", "-seg_duration", str(context.get("segtime", SEGTIME)),
                "-use_template", "1", "-use_timeline", "1", "-adaptation_sets", sets, "file:" + mpd])
    return context


def publish_status(main_task_id, status, result, correlation_id):
    """Publishes what Celery 4.x's amqp result backend published for
    update_state(main_task_id, ...)."""
    name = main_task_id.replace("-", "")
    exchange = Exchange("celeryresults", type="direct", durable=True)
    queue = Queue(name, exchange, routing_key=name, durable=True, auto_delete=True,
                  queue_arguments={"x-expires": 86400000})
    body = {"task_id": main_task_id, "status": status, "result": result, "traceback": None, "children": []}
    with app.producer_or_acquire() as producer:
        producer.publish(json.dumps(body), exchange=exchange, routing_key=name, declare=[queue],
                         content_type="application/json", content_encoding="utf-8",
                         delivery_mode=2, correlation_id=correlation_id, retry=True)


@app.task(name="adaptation.commons.notify", bind=True)
def notify(self, context, main_task_id, complete=False):
    if complete:
        publish_status(main_task_id, "COMPLETE", {"hls": master_playlist(context), "dash": dash_mpd(context)}, self.request.id)
    else:
        publish_status(main_task_id, "PARTIAL", {"hls": variant_playlist(context)}, self.request.id)
    return context


@app.task(name="adaptation.commons.encode_workflow", bind=True)
def encode_workflow(self, url):
    job = uuid.uuid4().hex
    context = {"url": url, "folder_out": os.path.join(OUTPUT_DIR, job), "id": job}
    main_task_id = self.request.id
    header = [chain(compute_target_size.s(target_height=height),
                    transcode.s(bitrate=kbps),
                    chunk_hls.s(segtime=SEGTIME),
                    add_playlist_info.s(),
                    notify.s(main_task_id=main_task_id))
              for height, kbps in renditions()]
    body = chain(add_playlist_footer.s(), chunk_dash.s(), notify.s(complete=True, main_task_id=main_task_id))
    chain(download_file.s(context=context), get_video_size.s(), add_playlist_header.s(), chord(header, body)).apply_async()
