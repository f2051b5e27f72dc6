//go:build linux

package rootfs

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseProgress(t *testing.T) {
	for _, c := range []struct {
		line string
		want Progress
	}{
		{"I: Retrieving libc6 2.36-9+deb12u10", Progress{'I', "Retrieving", "libc6 2.36-9+deb12u10", ""}},
		{"I: Retrieving InRelease ", Progress{'I', "Retrieving", "InRelease", ""}},
		{"I: Validating libacl1 2.3.1-3", Progress{'I', "Validating", "libacl1 2.3.1-3", ""}},
		{"I: Extracting libc6...", Progress{'I', "Extracting", "libc6", ""}},
		{"I: Installing core packages...", Progress{'I', "Installing", "core packages", ""}},
		{"I: Unpacking the base system...", Progress{'I', "Unpacking", "the base system", ""}},
		{"I: Configuring libc-bin...", Progress{'I', "Configuring", "libc-bin", ""}},
		{"I: Base system installed successfully.", Progress{'I', "Base", "system installed successfully.", ""}},
		{"I: Valid Release signature (key id 4D64)", Progress{'I', "", "Valid Release signature (key id 4D64)", ""}},
		{"W: Cannot check Release signature; keyring file not available", Progress{'W', "", "Cannot check Release signature; keyring file not available", ""}},
		{"E: Couldn't download packages: libc6", Progress{'E', "", "Couldn't download packages: libc6", ""}},
		{"E: Retrieving is not a stage in an error", Progress{'E', "", "Retrieving is not a stage in an error", ""}},
		{"dpkg: warning: something", Progress{}},
		{"", Progress{}},
	} {
		c.want.Line = strings.TrimRight(c.line, " ")
		if got := ParseProgress(c.line + "\n"); got != c.want {
			t.Errorf("ParseProgress(%q) = %+v, want %+v", c.line, got, c.want)
		}
	}
}

func TestDebootstrapBadOptions(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "img")
	for _, c := range []struct {
		opts DebootstrapOptions
		want string
	}{
		{DebootstrapOptions{Suite: "--foreign"}, `suite "--foreign"`},
		{DebootstrapOptions{Mirror: "deb.debian.org/debian"}, "want an http, https or file URL"},
		{DebootstrapOptions{Mirror: "ftp://deb.debian.org/debian"}, "want an http, https or file URL"},
		{DebootstrapOptions{Include: []string{"vim", "--no-check-gpg"}}, `"--no-check-gpg" is not a Debian package name`},
		{DebootstrapOptions{Command: "jailgate-no-such-debootstrap"}, "jailgate-no-such-debootstrap"},
	} {
		if err := Debootstrap(ctx, dir, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.opts, err, c.want)
		}
	}
	// Not installed: say how to install it.
	t.Setenv("PATH", t.TempDir())
	saved := debootstrapPaths
	debootstrapPaths = nil
	t.Cleanup(func() { debootstrapPaths = saved })
	if err := Debootstrap(ctx, dir, DebootstrapOptions{}); err == nil || !strings.Contains(err.Error(), "apt-get install debootstrap") {
		t.Errorf("without debootstrap: got %v, want the apt-get command", err)
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Error("a refused build created its directory")
	}
}

// fakeDebootstrap is a debootstrap that prints as the real one does,
// records its arguments and its mount namespace, and leaves what a real
// one leaves to clean: device nodes, a fifo, setuid files, .debs.
const fakeDebootstrap = `#!/bin/sh
for a; do suite=$target; target=$mirror; mirror=$a; done
mkdir -p "$target/dev" "$target/usr/bin" "$target/var/cache/apt/archives" "$target/etc"
echo "$@" > "$target/args"
readlink /proc/self/ns/mnt > "$target/mntns"
echo "I: Retrieving InRelease "
echo "I: Retrieving libc6 2.36-9"
echo "W: a warning"
mknod "$target/dev/null" c 1 3
mkfifo "$target/dev/initctl"
echo elf > "$target/usr/bin/su"; chmod 4755 "$target/usr/bin/su"
echo elf > "$target/usr/bin/expiry"; chmod 2755 "$target/usr/bin/expiry"
echo deb > "$target/var/cache/apt/archives/libc6_2.36-9_amd64.deb"
echo 12.11 > "$target/etc/debian_version"
if [ "$suite" = broken ]; then echo "E: Couldn't download packages: libc6" >&2; exit 1; fi
echo "I: Configuring libc-bin..."
echo "I: Base system installed successfully."
`

func TestDebootstrapFake(t *testing.T) {
	requireRoot(t) // mknod, and a mount namespace of its own
	bin := filepath.Join(t.TempDir(), "debootstrap")
	if err := os.WriteFile(bin, []byte(fakeDebootstrap), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "img")
	var stages []string
	var logged string
	opts := DebootstrapOptions{Command: bin, Include: []string{"vim", "less"},
		Progress: func(p Progress) { stages = append(stages, string(p.Level)+" "+p.Stage) },
		Log:      func(f string, a ...any) { logged = f }}
	if err := Debootstrap(context.Background(), dir, opts); err != nil {
		t.Fatal(err)
	}
	if want := []string{"I Retrieving", "I Retrieving", "W ", "I Configuring", "I Base"}; !reflect.DeepEqual(stages, want) {
		t.Errorf("progress %q, want %q", stages, want)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if want := "--variant=minbase --include=vim,less bookworm " + dir + " " + DefaultMirror + "\n"; string(args) != want {
		t.Errorf("debootstrap ran with %q, want %q", args, want)
	}
	ns, _ := os.ReadFile(filepath.Join(dir, "mntns"))
	if ours, _ := os.Readlink("/proc/self/ns/mnt"); strings.TrimSpace(string(ns)) == ours {
		t.Error("debootstrap ran in the host's mount namespace")
	}
	for _, gone := range []string{"dev/null", "dev/initctl", "var/cache/apt/archives/libc6_2.36-9_amd64.deb"} {
		if _, err := os.Lstat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("%s is still in the image", gone)
		}
	}
	for _, f := range []string{"usr/bin/su", "usr/bin/expiry"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v, want 0755 without setuid/setgid", f, fi.Mode(), err)
		}
	}
	if !strings.Contains(logged, "stripped setuid/setgid") {
		t.Errorf("the preparation was not logged: %q", logged)
	}

	// A failure says what debootstrap said.
	opts.Suite = "broken"
	err := Debootstrap(context.Background(), filepath.Join(t.TempDir(), "img"), opts)
	if err == nil || !strings.Contains(err.Error(), "Couldn't download packages: libc6") || !strings.Contains(err.Error(), "broken from "+DefaultMirror) {
		t.Errorf("got %v, want debootstrap's E: line with the suite and mirror", err)
	}
}
