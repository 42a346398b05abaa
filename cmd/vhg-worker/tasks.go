package main

import (
	"flag"
	"fmt"
	"path/filepath"

	"github.com/vhg/vhg-worker/tasks"
	"github.com/vhg/vhg-worker/worker"
)

// registerTasks registers the tasks this binary runs and returns the
// pipeline, whose RevokedStatus observer goes on the Server. Celery's
// builtins (celery.accumulate, celery.chord_unlock, ...) are always
// registered by the worker itself.
func registerTasks(mux *worker.ServeMux, deps tasks.Deps) *tasks.Pipeline {
	return tasks.Register(mux, deps)
}

// taskFlags are the settings of the adaptation tasks, shared by the worker
// and encode commands.
type taskFlags struct {
	outputDir  string
	renditions string
	inputRoots string
	tempDirs   string
}

// add defines the flags on fs; withInputRoots adds --input-roots (encode
// allows the input's own directory instead).
func (f *taskFlags) add(fs *flag.FlagSet, withInputRoots bool) {
	fs.StringVar(&f.outputDir, "output-dir", envOr("VHG_OUTPUT_DIR", "vhg-out"),
		"directory every workflow writes under; shared storage when workers run on several hosts (env VHG_OUTPUT_DIR)")
	fs.StringVar(&f.renditions, "renditions", "", "height:kbps pairs, e.g. 360:800,720:2500 (default 240:400,360:800,480:1200,720:2500,1080:5000)")
	if withInputRoots {
		fs.StringVar(&f.inputRoots, "input-roots", "", "comma-separated directories local file inputs may come from; empty refuses local inputs")
		fs.StringVar(&f.tempDirs, "source-temp-dirs", "",
			"comma-separated temp dirs where the original Python download_file leaves sources (tmpXXXXXXXX/<id>); empty means Python's: $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp, /usr/tmp")
	}
}

// deps turns the flags into tasks.Deps: the output directory made absolute
// (the tasks create what they write in it), the renditions parsed, the
// input roots made absolute.
func (f taskFlags) deps() (tasks.Deps, error) {
	out, err := filepath.Abs(f.outputDir)
	if err != nil {
		return tasks.Deps{}, fmt.Errorf("--output-dir: %w", err)
	}
	deps := tasks.Deps{OutputDir: out}
	if f.renditions != "" {
		if deps.Renditions, err = tasks.ParseRenditions(f.renditions); err != nil {
			return tasks.Deps{}, fmt.Errorf("--renditions: %w", err)
		}
	}
	for _, root := range splitList(f.inputRoots) {
		abs, err := filepath.Abs(root)
		if err != nil {
			return tasks.Deps{}, fmt.Errorf("--input-roots: %w", err)
		}
		deps.InputRoots = append(deps.InputRoots, abs)
	}
	for _, dir := range splitList(f.tempDirs) {
		if !filepath.IsAbs(dir) {
			return tasks.Deps{}, fmt.Errorf("--source-temp-dirs: %q is not an absolute path", dir)
		}
		deps.SourceTempDirs = append(deps.SourceTempDirs, filepath.Clean(dir))
	}
	return deps, nil
}
