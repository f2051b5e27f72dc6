package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jailgate/jailgate/config"
)

// This file writes the benchmarked gateway's configuration and reloads it
// when a part needs it changed (the ciphers offered, the sessions part's
// raised channel cap).

// The tenants of the morning and sessions parts.
const (
	tenantSessK   = "jgbsessk" // environment: session, pids raised: the sessions part's K sessions
	morningImage  = "jgbimg"   // the morning tenants' shared image (a layer each)
	morningPrefix = "jgbm"     // morning tenants are jgbm000, jgbm001, …
	sessPids      = 1 << 16    // the sessions tenant's limits.pids
)

// morningTenant is the i-th tenant of the morning part.
func morningTenant(i int) string { return fmt.Sprintf("%s%03d", morningPrefix, i) }

// jgState is what the written config depends on besides the options.
type jgState struct {
	chacha bool // offer chacha20-poly1305@openssh.com on top of the default ciphers
	raised bool // server.max_tenant_channels raised for the sessions part
}

// imageConfig is a config holding only the state_dir, for building the
// morning image before the real config (which names it) can be checked.
func (tb *testbed) imageConfig() string { return filepath.Join(tb.dir, "rootfs", "image.yaml") }

// jgStateDir is the benchmarked gateway's state_dir.
func (tb *testbed) jgStateDir() string { return filepath.Join(tb.dir, "jailgate", "state") }

// makeImage builds the morning tenants' image with jailgate's own builder
// (rootfs from-host --image), one tree for all of them: each gets her
// overlay layer over it at her first login, as config allows (a rootfs
// may be neither shared nor nested between tenants).
func (tb *testbed) makeImage() error {
	if err := os.WriteFile(tb.imageConfig(), []byte("state_dir: "+tb.jgStateDir()+"\n"), 0o600); err != nil {
		return err
	}
	return runCmd(tb.o.jailgate, "rootfs", "from-host", "-q", "--minimal", "--image", morningImage, "--config", tb.imageConfig())
}

// writeJailgateConfig writes the jailgate config as tb.jgs says.
func (tb *testbed) writeJailgateConfig() error {
	var users strings.Builder
	tenants := []struct{ name, extra string }{
		{tenantCold, ""}, {tenantWarm, "    linger: 60s\n"}, {tenantSess, "    environment: session\n"},
	}
	top := ""
	if tb.o.want("network") {
		tenants = append(tenants, struct{ name, extra string }{tenantNAT, "    network: nat\n"})
		top = "network_forwarding: auto\n"
	}
	if tb.o.want("sessions") {
		tenants = append(tenants, struct{ name, extra string }{tenantSessK,
			fmt.Sprintf("    environment: session\n    limits: { pids: %d }\n", sessPids)})
	}
	for _, t := range tenants {
		fmt.Fprintf(&users, "  %s:\n    keys_file: %s.pub\n    rootfs: %s\n%s", t.name, tb.key,
			filepath.Join(tb.dir, "rootfs", t.name), t.extra)
	}
	if tb.o.want("morning") {
		for i := 0; i < tb.o.morning; i++ {
			fmt.Fprintf(&users, "  %s:\n    keys_file: %s.pub\n    image: %s\n", morningTenant(i), tb.key, morningImage)
		}
	}
	ciphers := strings.Join(config.DefaultCiphers, ", ")
	if tb.jgs.chacha {
		ciphers += ", chacha20-poly1305@openssh.com"
	}
	server := "ciphers: [" + ciphers + "]"
	if tb.jgs.raised {
		server += fmt.Sprintf(", max_tenant_channels: %d", tb.maxK()+16)
	}
	cfg := fmt.Sprintf("# Written by jailgate's bench: the defaults, no limits, on loopback.\n"+
		"listen: 127.0.0.1:%d\nstate_dir: %s\nmetrics_listen: 127.0.0.1:%d\nlog: { format: json, level: info }\n"+
		"server: { %s }\n%susers:\n%s", tb.jgPort, tb.jgStateDir(), tb.metricsPort, server, top, users.String())
	return os.WriteFile(tb.jgConfig, []byte(cfg), 0o600)
}

// maxK is the largest number of simultaneous sessions one tenant holds in
// the sessions part.
func (tb *testbed) maxK() int { return max(tb.o.ksess, sessBase) }

// reload rewrites the config from tb.jgs, sends jailgate SIGHUP and waits
// for its log to say the reload was done (or refused: an error).
func (tb *testbed) reload() error {
	count := func() (ok, bad int) {
		b, _ := os.ReadFile(tb.jg.logPath)
		return bytes.Count(b, []byte(`"msg":"reloaded"`)), bytes.Count(b, []byte(`"msg":"reload rejected`))
	}
	ok0, bad0 := count()
	if err := tb.writeJailgateConfig(); err != nil {
		return err
	}
	if err := tb.jg.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		ok, bad := count()
		switch {
		case bad > bad0:
			log, _ := os.ReadFile(tb.jg.logPath)
			return fmt.Errorf("jailgate rejected the reload: %s", tail(log, 2000))
		case ok > ok0:
			return nil
		}
	}
	return fmt.Errorf("jailgate did not log a reload within 15s")
}

// offerChacha reloads jailgate with or without chacha20-poly1305 among its
// ciphers and waits until a pinned login shows it took effect.
func (tb *testbed) offerChacha(ctx context.Context, on bool) error {
	tb.jgs.chacha = on
	if err := tb.reload(); err != nil {
		return err
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		err := tb.ssh(ctx, tb.jg, tenantWarm, pinned, false, "true").Run()
		if (err == nil) == on {
			return nil
		}
	}
	return fmt.Errorf("jailgate did not reload to chacha20 offered=%v within 10s", on)
}
