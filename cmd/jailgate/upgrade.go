package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jailgate/jailgate/gateway/admin"
)

// An upgrade (issue 17, README "Restarts and upgrades") hands the gateway
// over to the binary now installed at the running one's path, with no
// refused connection:
//
//	old serve                                 new serve (the same path, re-read)
//	  │ SIGUSR2, or `jailgate upgrade`
//	  │── fork+exec, listeners + report pipe ──► runs every serve step on the
//	  │                                          inherited SSH, admin and metrics
//	  │                                          listeners (nothing re-bound)
//	  │◄── report {pid, version}, then ready ───│ writes the pid file; serves
//	  │ closes its copies of the listeners
//	  │ serves its established connections until they end (upgrade_drain)
//	  │ lets go of its environments (Detach), exits 0, leaving the admin
//	  │ socket, the nftables table and the tenant layers to the new one
//
// A new process that fails (a bad configuration, a broken binary, an exit
// at start) reports why on the pipe if it can; the old one keeps
// everything. github.com/cloudflare/tableflip does the fd handover, the
// ready handshake and the pid file.

// upgradeTimeout is how long a new process has to become ready; within
// the admin socket's own bound on a request.
const upgradeTimeout = 45 * time.Second

// reportName names the pipe a new process reports its start on.
const reportName = "jailgate-upgrade-report"

// upgradedFromEnv carries the old process's pid and version to the new
// one (for its log and /readyz); the new one unsets it at once, so that
// nothing it starts inherits it.
const upgradedFromEnv = "JAILGATE_UPGRADED_FROM"

// startReport is what a new process tells the old one about its start.
type startReport struct {
	PID      int      `json:"pid"`
	Version  string   `json:"version"`
	Problems []string `json:"problems,omitempty"` // its configuration's, one per line
	Error    string   `json:"error,omitempty"`    // why it did not start
}

// upgrades is serve's side of tableflip.
type upgrades struct {
	up     *tableflip.Upgrader
	mu     sync.Mutex // one upgrade at a time
	closed bool       // under mu: the server is stopping, no upgrade starts
	report *os.File   // in a new process until it has reported; else nil
	from   string     // in a new process: "PID VERSION" of the old one
	// oldGone is closed when the old process has exited (tableflip sees
	// the pipe it held close); nil in a process no upgrade started.
	oldGone chan struct{}
	total   *prometheus.CounterVec
}

// newUpgrades takes the listeners and the report pipe an old process
// passed, if this is a new one. pidFile ("" for none) is written with this
// process's pid once it is ready.
func newUpgrades(pidFile string) (*upgrades, error) {
	up, err := tableflip.New(tableflip.Options{UpgradeTimeout: upgradeTimeout, PIDFile: pidFile})
	if err != nil {
		return nil, fmt.Errorf("upgrades: %w", err)
	}
	u := &upgrades{up: up, total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jailgate_upgrades_total",
		Help: "Upgrades: failed attempts, counted by the old process that kept serving (result error), and the handover that started this process (result ok)."},
		[]string{"result"})}
	if up.HasParent() {
		u.report, _ = up.File(reportName)
		u.from = os.Getenv(upgradedFromEnv)
		os.Unsetenv(upgradedFromEnv)
		u.oldGone = make(chan struct{})
		go func() {
			up.WaitForParent(context.Background())
			close(u.oldGone)
		}()
	}
	return u, nil
}

// isNew reports whether an old process started this one.
func (u *upgrades) isNew() bool { return u.up.HasParent() }

// tell sends r to the old process, once.
func (u *upgrades) tell(r startReport) {
	if u.report == nil {
		return
	}
	b, _ := json.Marshal(r)
	u.report.Write(append(b, '\n'))
	u.report.Close()
	u.report = nil
}

// failed tells the old process why this one did not start (err != nil):
// serve's error, with its configuration's problems line by line.
func (u *upgrades) failed(err error) {
	if err == nil {
		return
	}
	r := startReport{PID: os.Getpid(), Version: version, Error: err.Error()}
	var ce *configError
	if errors.As(err, &ce) {
		r.Problems = ce.lines
	}
	u.tell(r)
}

// ready tells the old process this one serves (its pid and version), then
// completes the handshake: the pid file names this process and the old
// one closes its listeners.
func (u *upgrades) ready() error {
	u.tell(startReport{PID: os.Getpid(), Version: version})
	if u.isNew() {
		u.total.WithLabelValues("ok").Inc()
	}
	return u.up.Ready()
}

// oldPID is the pid of the process that started this one by an upgrade,
// while it still runs (draining its connections); 0 otherwise.
func (u *upgrades) oldPID() int {
	if u.oldGone == nil {
		return 0
	}
	select {
	case <-u.oldGone:
		return 0
	default:
	}
	pid, _, _ := strings.Cut(u.from, " ")
	n, _ := strconv.Atoi(pid)
	return n
}

// start starts the binary at this process's path on its listeners and
// waits until it is ready (nil) or has failed (the error, with what it
// reported).
func (u *upgrades) start() (startReport, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return startReport{}, errors.New("the server is stopping")
	}
	r, w, err := os.Pipe()
	if err != nil {
		return startReport{}, err
	}
	defer r.Close()
	err = u.up.AddFile(reportName, w) // a dup; ours closes now
	w.Close()
	if err != nil {
		return startReport{}, err
	}
	os.Setenv(upgradedFromEnv, fmt.Sprintf("%d %s", os.Getpid(), version))
	err = u.up.Upgrade()
	os.Unsetenv(upgradedFromEnv)
	rep := readReport(r)
	if err != nil {
		u.total.WithLabelValues("error").Inc()
		if strings.Contains(err.Error(), "parent hasn't exited") {
			err = errors.New("the gateway this one took over from still drains its connections; upgrade again once it has exited")
		}
		if rep.Error != "" && len(rep.Problems) == 0 {
			err = fmt.Errorf("%w: %s", err, rep.Error)
		}
		return rep, err
	}
	return rep, nil
}

// close refuses every upgrade from now on, once one in progress has
// finished, and reports whether that one handed over (done holds its new
// process): a stop that raced an upgrade must then leave what the new
// process uses.
func (u *upgrades) close(done <-chan startReport) bool {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// readReport reads what the new process reported: it wrote it before it
// became ready or exited, so it is in the pipe already, or never comes.
func readReport(r *os.File) startReport {
	var rep startReport
	r.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if line, err := bufio.NewReader(r).ReadBytes('\n'); err == nil {
		json.Unmarshal(line, &rep)
	}
	return rep
}

// upgradeReply is the admin socket's answer to an upgrade: the pids and
// versions, or why the new process failed.
func upgradeReply(rep startReport, err error) admin.Reply {
	reply := admin.Reply{OK: err == nil, OldPID: os.Getpid(), OldVersion: version, NewPID: rep.PID, NewVersion: rep.Version}
	if err != nil {
		reply.Error = "the new process failed, this one keeps serving: " + err.Error()
		reply.Problems = rep.Problems
	}
	return reply
}
