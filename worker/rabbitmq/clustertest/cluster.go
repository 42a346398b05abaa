// Package clustertest starts a private RabbitMQ cluster on this machine for
// tests: three nodes of Debian's rabbitmq-server package beside the system
// node, each with its own name, ports, data and log directories, all with
// one Erlang cookie, joined with rabbitmqctl join_cluster. It never touches
// the system node (5672) nor epmd, which the nodes share.
//
// Debian's /usr/sbin/rabbitmq* wrappers switch to the rabbitmq user and
// its home (the system node's cookie), so the harness runs the package's
// own scripts (/usr/lib/rabbitmq/bin) with HOME set to the cluster's
// directory, and an empty RABBITMQ_CONF_ENV_FILE, or the system
// rabbitmq-env.conf would rename every node.
package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vhg/vhg-worker/worker/tlstest"
)

// ScriptsDir holds the package's rabbitmq-server and rabbitmqctl scripts.
const ScriptsDir = "/usr/lib/rabbitmq/bin"

// Options configures a cluster. Every zero value has the meaning given.
type Options struct {
	// Nodes is the number of nodes; zero means 3.
	Nodes int
	// Dir is the cluster's own directory (cookie, data, logs, pid files),
	// removed at cleanup; empty means /tmp/vhg-clustertest-<uid>. A
	// cluster left running there by a killed test run is stopped first.
	Dir string
	// TLS, when set, gives every node a TLS listener (Node.TLSPort) with
	// these certificates, verifying client certificates when presented.
	TLS *tlstest.Files
}

// Cluster is a running private cluster.
type Cluster struct {
	dir    string
	cookie string
	Nodes  []*Node
}

// Node is one node of the cluster.
type Node struct {
	Name     string // vhgcN@localhost
	Port     int    // AMQP
	TLSPort  int    // AMQPS; zero without Options.TLS
	distPort int
	dir      string
	env      []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// URL is the node's amqp:// URL for the guest user.
func (n *Node) URL() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d//", n.Port) }

// Addr is the node's AMQP host:port.
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)) }

// URL is Celery's ";"-separated list of the nodes' URLs.
func (c *Cluster) URL() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.URL())
	}
	return strings.Join(urls, ";")
}

// Start starts the nodes, joins them into one cluster and waits until
// every node runs; it stops them and removes the directory at cleanup,
// also when the test fails.
func Start(t testing.TB, opt Options) *Cluster {
	t.Helper()
	if opt.Nodes == 0 {
		opt.Nodes = 3
	}
	if opt.Dir == "" {
		opt.Dir = filepath.Join(os.TempDir(), fmt.Sprintf("vhg-clustertest-%d", os.Getuid()))
	}
	if _, err := os.Stat(filepath.Join(ScriptsDir, "rabbitmq-server")); err != nil {
		t.Fatalf("clustertest: RabbitMQ's scripts are not in %s (install rabbitmq-server: make setup): %v", ScriptsDir, err)
	}
	killLeftovers(t, opt.Dir)
	if err := os.RemoveAll(opt.Dir); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{dir: opt.Dir, cookie: fmt.Sprintf("VHGCLUSTERTEST%d", time.Now().UnixNano())}
	if err := os.MkdirAll(opt.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(path, content string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(opt.Dir, ".erlang.cookie"), c.cookie, 0o400)
	write(filepath.Join(opt.Dir, "empty-env.conf"), "", 0o600)
	write(filepath.Join(opt.Dir, "enabled_plugins"), "[].\n", 0o600)
	t.Cleanup(func() { c.stopAll(t) })

	ports := freePorts(t, 3*opt.Nodes)
	for i := range opt.Nodes {
		n := &Node{Name: fmt.Sprintf("vhgc%d@localhost", i+1), Port: ports[3*i], distPort: ports[3*i+1],
			dir: filepath.Join(opt.Dir, fmt.Sprintf("node%d", i+1))}
		conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n", n.Port)
		if opt.TLS != nil {
			n.TLSPort = ports[3*i+2]
			conf += fmt.Sprintf("listeners.ssl.default = 127.0.0.1:%d\n"+
				"ssl_options.cacertfile = %s\nssl_options.certfile = %s\nssl_options.keyfile = %s\n"+
				"ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n",
				n.TLSPort, opt.TLS.CA, opt.TLS.ServerCert, opt.TLS.ServerKey)
		}
		if err := os.MkdirAll(filepath.Join(n.dir, "log"), 0o700); err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(n.dir, "rabbitmq.conf"), conf, 0o600)
		n.env = append(c.baseEnv(),
			"RABBITMQ_NODENAME="+n.Name,
			"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
			"RABBITMQ_NODE_PORT="+strconv.Itoa(n.Port),
			"RABBITMQ_DIST_PORT="+strconv.Itoa(n.distPort),
			"RABBITMQ_MNESIA_BASE="+filepath.Join(n.dir, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(n.dir, "log"),
			"RABBITMQ_CONFIG_FILE="+filepath.Join(n.dir, "rabbitmq.conf"),
			"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(n.dir, "advanced.config"),
			"RABBITMQ_PID_FILE="+filepath.Join(n.dir, "pid"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(opt.Dir, "enabled_plugins"),
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		)
		c.Nodes = append(c.Nodes, n)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.boot(n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	for _, n := range c.Nodes[1:] {
		c.Ctl(t, n, "stop_app")
		c.Ctl(t, n, "join_cluster", c.Nodes[0].Name)
		c.Ctl(t, n, "start_app")
	}
	status := c.Ctl(t, c.Nodes[0], "cluster_status")
	for _, n := range c.Nodes {
		if !strings.Contains(status, n.Name) {
			t.Fatalf("clustertest: %s did not join:\n%s", n.Name, status)
		}
	}
	t.Logf("clustertest: %d nodes started and joined in %s; resident memory %s", len(c.Nodes),
		time.Since(start).Round(100*time.Millisecond), c.RSS())
	return c
}

// RSS describes the resident memory of each running node: of every
// process of its group (the scripts exec erl, which runs the Erlang VM as
// a child).
func (c *Cluster) RSS() string {
	var parts []string
	total := 0
	for _, n := range c.Nodes {
		n.mu.Lock()
		pid := 0
		if n.cmd != nil && n.cmd.Process != nil {
			pid = n.cmd.Process.Pid
		}
		n.mu.Unlock()
		kib := groupRSSKiB(pid)
		total += kib
		parts = append(parts, fmt.Sprintf("%s %d MiB", n.Name, kib/1024))
	}
	return fmt.Sprintf("%d MiB (%s)", total/1024, strings.Join(parts, ", "))
}

// groupRSSKiB sums VmRSS over the processes of process group pgid.
func groupRSSKiB(pgid int) int {
	if pgid <= 0 {
		return 0
	}
	entries, _ := os.ReadDir("/proc")
	total := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces.
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		if f := strings.Fields(rest); len(f) >= 3 && f[2] == strconv.Itoa(pgid) {
			total += rssKiB(pid)
		}
	}
	return total
}

// rssKiB is VmRSS of a process, or 0.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, _ := strconv.Atoi(f[1])
			return kib
		}
	}
	return 0
}

// baseEnv is what every script of the cluster runs with.
func (c *Cluster) baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RABBITMQ_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "ERL_") {
			env = append(env, kv)
		}
	}
	return append(env, "HOME="+c.dir, "RABBITMQ_CONF_ENV_FILE="+filepath.Join(c.dir, "empty-env.conf"),
		"ERL_EPMD_ADDRESS=127.0.0.1")
}

// boot starts a node's rabbitmq-server in the foreground, in its own
// process group, and waits until it runs.
func (c *Cluster) boot(n *Node) error {
	cmd := exec.Command(filepath.Join(ScriptsDir, "rabbitmq-server"))
	cmd.Env = n.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.OpenFile(filepath.Join(n.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	os.WriteFile(filepath.Join(n.dir, "group.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	// await_startup waits for the node's boot (it fails while the node
	// is not even listening for the CLI yet, so retry that).
	deadline := time.Now().Add(3 * time.Minute)
	for {
		outb, err := c.ctl(n, "await_startup", "--timeout", "120")
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited while starting:\n%s", n.Name, tail(filepath.Join(n.dir, "stdout.log")))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start: %v %s\n%s", n.Name, err, outb, tail(filepath.Join(n.dir, "stdout.log")))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ctl runs the package's rabbitmqctl against node n.
func (c *Cluster) ctl(n *Node, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(ScriptsDir, "rabbitmqctl"), append([]string{"-n", n.Name}, args...)...)
	cmd.Env = c.baseEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Ctl runs rabbitmqctl against node n and returns its output; a failure
// fails the test.
func (c *Cluster) Ctl(t testing.TB, n *Node, args ...string) string {
	t.Helper()
	out, err := c.ctl(n, args...)
	if err != nil {
		t.Fatalf("clustertest: rabbitmqctl -n %s %v: %v\n%s", n.Name, args, err, out)
	}
	return out
}

// Stop stops node n (rabbitmqctl stop: the node goes away as in a
// shutdown; its connections are closed) and waits until it has exited.
func (c *Cluster) Stop(t testing.TB, n *Node) {
	t.Helper()
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if out, err := c.ctl(n, "stop"); err != nil {
		t.Logf("clustertest: rabbitmqctl stop %s: %v %s; killing it", n.Name, err, out)
		n.kill()
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		n.kill()
		<-done
	}
}

// Kill kills node n with SIGKILL, as a machine that dies.
func (c *Cluster) Kill(t testing.TB, n *Node) {
	t.Helper()
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	n.kill()
	<-done
}

// Restart starts a stopped node n again; it rejoins the cluster.
func (c *Cluster) Restart(t testing.TB, n *Node) {
	t.Helper()
	if err := c.boot(n); err != nil {
		t.Fatalf("clustertest: %v", err)
	}
}

// kill kills the node's process group.
func (n *Node) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && n.cmd.Process != nil {
		syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// stopAll stops every node still running and removes the directory.
func (c *Cluster) stopAll(t testing.TB) {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		n.mu.Lock()
		done := n.done
		n.mu.Unlock()
		if done == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-done:
				return
			default:
			}
			if t.Failed() {
				t.Logf("clustertest: %s log tail:\n%s", n.Name, tail(filepath.Join(n.dir, "stdout.log")))
			}
			c.ctl(n, "stop")
			select {
			case <-done:
			case <-time.After(30 * time.Second):
			}
			n.kill() // the group: erl_child_setup and friends too
			<-done
		}()
	}
	wg.Wait()
	os.RemoveAll(c.dir)
}

// killLeftovers kills the process groups of nodes that a killed test run
// left in dir: only those whose recorded leader is still a RabbitMQ node
// of this harness.
func killLeftovers(t testing.TB, dir string) {
	pids, _ := filepath.Glob(filepath.Join(dir, "node*", "group.pid"))
	for _, f := range pids {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte("vhgc")) && !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		t.Logf("clustertest: killing the leftover node group %d (%s)", pid, f)
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// freePorts returns n distinct free ports on 127.0.0.1.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// tail is the end of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
