// Package tasks holds the adaptation.commons tasks of the VHG pipeline and
// encode_workflow, the task that chains them, as handlers for a
// worker.ServeMux:
//
//	mux := worker.NewServeMux()
//	tasks.Register(mux, tasks.Deps{OutputDir: "/srv/vhg/out", Status: broker.AMQPBackend(0)})
//
// # The workflow
//
// encode_workflow(url) probes the source, keeps the renditions of
// Deps.Renditions that are no taller than it, and applies (Workflow.Canvas):
//
//	download_file(context={url, folder_out, id})
//	  | get_video_size | add_playlist_header
//	  | chord([compute_target_size(target_height=h) | transcode(bitrate=b)
//	           | chunk_hls(segtime=4) | add_playlist_info | notify(main_task_id)
//	           for each rendition],
//	          add_playlist_footer | chunk_dash | notify(complete=True, main_task_id))
//
// Every task takes the context dict first (download_file as the kwarg
// "context"), adds its named kwargs to it and returns it, as the Python
// tasks did; add_playlist_footer takes the list of the chord header's
// results and returns the first. The files live in the layout of package
// context, under Deps.OutputDir:
//
//	<folder_out>/source/<id>            the original (download_file)
//	<folder_out>/encoding/WxH.mp4       one rendition (transcode)
//	<folder_out>/hls/WxH/playlist.m3u8  its HLS cut (chunk_hls)
//	<folder_out>/hls/playlist.m3u8      the master playlist
//	<folder_out>/variants/WxH.json      what the master lists (add_playlist_info)
//	<folder_out>/dash/playlist.mpd      every rendition for DASH (chunk_dash)
//
// # Many hosts
//
// A step may run on any worker on any host: nothing is kept in process
// memory between tasks, every file a later step reads is under the output
// directory (shared storage), and every output appears under its final name
// in one rename, so a step that runs twice (acks_late redelivers the long
// ones after a crash) leaves a clean result. The master playlist is written
// under a flock(2) lock, with per-variant records, so renditions finishing
// in any order, on any host, give the same valid master.
//
// # Next to the original Python workers
//
// During a migration the original Python tasks share the queue (see
// original.go and playlist.go): a step reads original_file from the
// original download_file's temp dir (<tmp>/tmpXXXXXXXX/<id>, on the same
// host) as well as from folder_out; add_playlist_info appends to a master
// the Python tasks also append to, and the chord body rebuilds one they
// left invalid; the notify_failure errback travels on FailureQueue, which
// only Go workers consume.
//
// # Status messages
//
// The status queue of the root task (Deps.Status; rabbitmq.AMQPBackend
// writes Celery's legacy amqp result messages) receives PROGRESS
// {"percent", "step", "rendition"} during each transcode, PARTIAL {"hls"}
// per rendition, COMPLETE {"hls", "dash"} at the end, or FAILURE {"error",
// "task_id", "exc_type"} if any step fails. Failures are reported by the
// notify_failure errback that encode_workflow attaches to every step (on
// FailureQueue, whichever worker, Go or Python, runs the failing step), or,
// for a canvas built without it (by a Python client) and for
// encode_workflow itself, by the FailureStatus middleware: once either way.
//
// # Trust
//
// The context comes off the broker. Every task checks it with
// Context.Validate before touching a file (folder_out inside the output
// directory, a safe id), and original_file must be inside folder_out or
// exactly where the original download_file puts a source; local inputs are
// read only from Deps.InputRoots,
// and ffmpeg gets argv slices with file: URLs, never a shell.
//
// The original comes from the client too. http(s) downloads are bounded
// (Deps.MaxDownloadSize, ConnectTimeout, IdleTimeout, 5 redirects) and may
// be kept off internal addresses (Deps.DownloadHosts, checked on each
// connection, so redirects and DNS answers cannot lead around it; under
// it encode_workflow's probe goes through a relay on the same client).
// ffmpeg and ffprobe read the original with the file protocol and the
// container demuxers of ffmpeg.SourceFormats only, so a playlist or concat
// list posing as a video cannot make them read other files. Refusals are
// ValueErrors and leave nothing on disk.
package tasks
