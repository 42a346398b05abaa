package ffmpeg

import "syscall"

// setDeathSignal has the kernel SIGKILL the child when the thread that
// started it exits. The Go runtime only retires threads locked with
// runtime.LockOSThread, which nothing here uses, so in practice that is
// when the worker process dies.
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
