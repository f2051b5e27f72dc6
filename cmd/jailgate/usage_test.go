package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSubcommandHelp: `jailgate SUBCOMMAND --help` prints that
// subcommand's synopsis and flags and exits 0, not the global usage with
// "flag: help requested" and exit 2; a bad flag still is a usage error.
func TestSubcommandHelp(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		synopsis string
		flag     string
	}{
		{[]string{"rootfs", "from-host", "--help"}, "usage: jailgate rootfs from-host [", "-minimal"},
		{[]string{"check", "-h"}, "usage: jailgate check --config FILE", "-config"},
		{[]string{"tenant", "du", "--help"}, "usage: jailgate tenant du", "-config"},
		{[]string{"recordings", "list", "-h"}, "usage: jailgate recordings list", "-tenant"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		got := errb.String()
		if code != exitOK || !strings.HasPrefix(got, tc.synopsis) || !strings.Contains(got, tc.flag) ||
			strings.Contains(got, "help requested") || strings.Contains(got, "<command>") {
			t.Errorf("%v: exit %d, stderr:\n%s", tc.args, code, got)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"rootfs", "from-host", "--bogus"}, &out, &errb); code != exitUsage ||
		!strings.Contains(errb.String(), "flag provided but not defined: -bogus") {
		t.Errorf("a bad flag: exit %d, stderr:\n%s", code, errb.String())
	}
}
