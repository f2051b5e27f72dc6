package gateway

import (
	"fmt"
	"sync"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/rootfs"
)

// Her disk quota, as she and the operator see it (issue 19): past her
// quota her writes fail with EDQUOT or ENOSPC, which says nothing about
// what to do. So her next login in a terminal prints one line with what
// she holds, her quota, and how to find what takes it; and the gateway
// logs limit.disk once each time she crosses it (not at every login while
// she stays past it).

// diskDuHint is the command her line suggests: her largest files last.
const diskDuHint = "du -sh ~/* | sort -h"

// diskSlack is how near her limit counts as past it: a write that fails
// leaves her a little under her limit (a btrfs qgroup refuses a write
// whose reservation would cross it; ext4 keeps its metadata), so "full" is
// within 1% of it.
const diskSlack = 100

// diskWatch remembers which tenants were last seen past their quota, so
// that a crossing is logged once. Its zero value is ready.
type diskWatch struct {
	mu   sync.Mutex
	over map[string]bool
}

// crossed records whether tenant is past her quota now and reports
// whether that is a change into it.
func (w *diskWatch) crossed(tenant string, over bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over == nil {
		w.over = map[string]bool{}
	}
	was := w.over[tenant]
	if over {
		w.over[tenant] = true
	} else {
		delete(w.over, tenant)
	}
	return over && !was
}

// full reports whether used is within diskSlack of a non-zero limit.
func full(used, limit int64) bool {
	return limit > 0 && used >= limit-limit/diskSlack
}

// diskFullText is the line she reads when u is past a limit, or "".
func diskFullText(u rootfs.Usage) string {
	switch {
	case full(u.Bytes, u.BytesLimit):
		return fmt.Sprintf("your disk is full: %s used of your %s quota (limits.disk); writes fail until you free some. "+
			"What takes it: %s", config.FormatSize(u.Bytes), config.FormatSize(u.BytesLimit), diskDuHint)
	case full(u.Inodes, u.InodesLimit):
		return fmt.Sprintf("your disk is full: %d files of your %d quota (limits.inodes); new files fail until you remove some. "+
			"What takes it: %s", u.Inodes, u.InodesLimit, diskDuHint)
	}
	return ""
}

// diskNotice reads her disk use at the start of ss's command (Options.
// DiskUsage), logs limit.disk when she has crossed her quota since it was
// last read, and, past it, tells her in one line if ss has a terminal.
func (ss *session) diskNotice() {
	s, u := ss.srv, ss.auth.tenant
	if s.opts.DiskUsage == nil || u == nil || !u.Disk.Set() {
		return
	}
	us, ok := s.opts.DiskUsage(u)
	if !ok {
		return
	}
	msg := diskFullText(us)
	if s.disk.crossed(u.Name, msg != "") {
		s.log.Warn("limit.disk", "tenant", u.Name, "used", us.Bytes, "limit", us.BytesLimit,
			"inodes", us.Inodes, "inodes_limit", us.InodesLimit, "backend", us.Backend)
	}
	ss.mu.Lock()
	tty := ss.pty != nil
	ss.mu.Unlock()
	if msg != "" && tty {
		ss.notice(msg)
	}
}
