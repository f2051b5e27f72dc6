//go:build linux

package rootfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root, unless CI is set: there a
// root-only test that cannot run must fail loudly (style.md b.7).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root, and CI is set")
	}
	t.Skip("this test needs root")
}

// built is one FromHost tree shared by the tests that only read it.
var built struct {
	once sync.Once
	dir  string
	logs int
	err  error
}

func sharedTree(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	built.once.Do(func() {
		tmp, err := os.MkdirTemp("", "rootfs-test-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = filepath.Join(tmp, "root")
		built.err = FromHost(built.dir, FromHostOptions{
			With: []string{"xargs", "/usr/bin/env"},
			Log:  func(string, ...any) { built.logs++ },
		})
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(filepath.Dir(built.dir))
	}
	os.Exit(code)
}

// runIn runs bash -c script chrooted into dir, with /proc mounted there for
// the duration. Chroot is good enough for a test; the jail pivot_roots.
func runIn(t *testing.T, dir, script string, env ...string) (string, int) {
	t.Helper()
	proc := filepath.Join(dir, "proc")
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Fatalf("mount proc: %v", err)
	}
	defer unix.Unmount(proc, unix.MNT_DETACH)
	cmd := exec.Command("/bin/bash", "-c", script)
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL=C", "HOME=/root"}, env...)
	cmd.SysProcAttr = &unix.SysProcAttr{Chroot: dir}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bash in %s: %v", dir, err)
	}
	err := cmd.Wait()
	if err != nil {
		t.Logf("bash -c %q: %v\n%s", script, err, out.String())
	}
	return out.String() + "pid " + strconv.Itoa(cmd.Process.Pid), cmd.ProcessState.ExitCode()
}

func TestFromHostRuns(t *testing.T) {
	dir := sharedTree(t)
	if built.logs == 0 {
		t.Error("Log was never called")
	}
	out, code := runIn(t, dir, `echo hi; ls /; id -u; ps -o pid= -p $$`)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	lines := strings.Fields(out)
	if lines[0] != "hi" {
		t.Errorf("first line %q, want hi", lines[0])
	}
	for _, want := range []string{"bin", "etc", "usr", "tmp", "root", "proc", "dev"} {
		if !strings.Contains(out, "\n"+want+"\n") {
			t.Errorf("ls / lacks %s:\n%s", want, out)
		}
	}
	// id -u, then ps's pid of the shell, then the pid Go started.
	n := len(lines)
	if lines[n-4] != "0" || lines[n-3] != lines[n-1] {
		t.Errorf("want uid 0 and the shell's pid %s, got:\n%s", lines[n-1], out)
	}
}

// TestFromHostLibraries asks the dynamic loader of every copied binary to
// find its libraries inside the tree (LD_TRACE_LOADED_OBJECTS lists them
// without running the program).
func TestFromHostLibraries(t *testing.T) {
	dir := sharedTree(t)
	// Only dynamically linked ELF files: a static one would really run.
	var progs []string
	for _, sub := range []string{"usr/bin", "usr/sbin", "usr/local/bin"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range entries {
			f, err := elf.Open(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				continue
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					progs = append(progs, "/"+sub+"/"+e.Name())
				}
			}
			f.Close()
		}
	}
	if len(progs) < len(baseCommands)/2 {
		t.Fatalf("only %d dynamic binaries in the tree: %v", len(progs), progs)
	}
	out, code := runIn(t, dir, `for f in `+strings.Join(progs, " ")+`; do
		LD_TRACE_LOADED_OBJECTS=1 "$f" </dev/null 2>&1 | grep -E 'not found|error' | sed "s|^|$f: |"
	done; xargs --version | head -1
	. /etc/profile; if command -v tmux >/dev/null; then tmux -V; fi; true`)
	if code != 0 || strings.Contains(out, "not found") || strings.Contains(out, "error") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if _, err := os.Stat("/usr/bin/tmux"); err == nil && !strings.Contains(out, "tmux ") {
		t.Errorf("tmux does not start:\n%s", out)
	}
	if !strings.Contains(out, "xargs") {
		t.Errorf("xargs (With) does not run:\n%s", out)
	}
}

func TestFromHostLayout(t *testing.T) {
	dir := sharedTree(t)
	for _, n := range []string{"bin", "sbin", "lib", "lib64"} {
		host, err := os.Readlink("/" + n)
		if err != nil {
			continue // not merged on this host
		}
		if got, err := os.Readlink(filepath.Join(dir, n)); err != nil || got != host {
			t.Errorf("/%s: link to %q (%v), want %q as on the host", n, got, err, host)
		}
	}
	modes := map[string]fs.FileMode{
		"tmp":                 fs.ModeDir | fs.ModeSticky | 0o777,
		"var/tmp":             fs.ModeDir | fs.ModeSticky | 0o777,
		"root":                fs.ModeDir | 0o700,
		".":                   fs.ModeDir | 0o755,
		"etc/passwd":          0o644,
		"etc/jailgate-rootfs": 0o644,
	}
	for name, want := range modes {
		if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, want)
		}
	}
	// mount is setuid root on the host; the copy must not be.
	err := filepath.WalkDir(filepath.Join(dir, "usr"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, _ := d.Info(); fi != nil && fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			t.Errorf("%s is %v", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "etc/passwd"))
	if err != nil || !strings.HasPrefix(string(data), "root:x:0:0:root:/root:/bin/bash\n") {
		t.Errorf("etc/passwd = %q, %v", data, err)
	}
	if _, err := os.Stat("/usr/bin/vi"); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "usr/bin/vi")); err != nil {
			t.Errorf("vi through its alternatives link: %v", err)
		}
	}
}

func TestFromHostRefresh(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "root")
	if err := FromHost(dir, FromHostOptions{}); err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(dir, "etc/passwd")
	edited := "root:x:0:0:root:/root:/bin/sh\n"
	if err := os.WriteFile(passwd, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	ls := filepath.Join(dir, "usr/bin/ls")
	if err := os.Remove(ls); err != nil {
		t.Fatal(err)
	}
	if err := FromHost(dir, FromHostOptions{}); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if _, err := os.Stat(ls); err != nil {
		t.Errorf("refresh did not restore ls: %v", err)
	}
	if data, _ := os.ReadFile(passwd); string(data) != edited {
		t.Errorf("refresh overwrote an edited /etc/passwd: %q", data)
	}
	if out, code := runIn(t, dir, "ls /etc"); code != 0 || !strings.Contains(out, "passwd") {
		t.Errorf("after refresh: exit %d\n%s", code, out)
	}
}

func TestFromHostRefuses(t *testing.T) {
	requireRoot(t)
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "mine"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := FromHost(foreign, FromHostOptions{})
	if !errors.Is(err, ErrNotEmpty) {
		t.Errorf("foreign non-empty dir: err = %v, want ErrNotEmpty", err)
	}
	if _, serr := os.Stat(filepath.Join(foreign, "etc")); serr == nil {
		t.Error("FromHost wrote into a foreign dir")
	}

	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	if err := FromHost(link, FromHostOptions{}); !errors.Is(err, ErrSymlink) {
		t.Errorf("symlinked dir: err = %v, want ErrSymlink", err)
	}

	empty := t.TempDir()
	err = FromHost(empty, FromHostOptions{With: []string{"no-such-command-jg"}})
	if err == nil || !strings.Contains(err.Error(), `"no-such-command-jg"`) || !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("unknown With name: err = %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a failed lookup left %d entries behind", len(entries))
	}
	if err := FromHost(t.TempDir(), FromHostOptions{With: []string{"bin/ls"}}); err == nil {
		t.Error("relative path in With accepted")
	}
}

func TestReadLdConf(t *testing.T) {
	d := t.TempDir()
	if err := os.MkdirAll(filepath.Join(d, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"ld.so.conf":       "# comment\n/opt/a\ninclude conf.d/*.conf\n/opt/b:/opt/c\nhwcap 0 x\n",
		"conf.d/1.conf":    "/usr/local/lib # trailing\n",
		"conf.d/2.conf":    "include " + filepath.Join(d, "ld.so.conf") + "\n", // a loop
		"conf.d/other.txt": "/nope\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := readLdConf(filepath.Join(d, "ld.so.conf"), 0)
	if len(got) < 4 || strings.Join(got[:2], " ") != "/opt/a /usr/local/lib" {
		t.Errorf("readLdConf = %v", got)
	}
	for _, d := range got {
		if d == "/nope" {
			t.Error("a file not matching the include pattern was read")
		}
	}
}

func TestExpandSearch(t *testing.T) {
	got := expandSearch([]string{"$ORIGIN/../lib:/opt/x:rel:${ORIGIN}:$LIB/y"}, []string{"/usr/bin"})
	want := "/usr/lib /opt/x /usr/bin"
	if strings.Join(got, " ") != want {
		t.Errorf("expandSearch = %v, want %s", got, want)
	}
}

// TestFromHostHostileRefresh refreshes a tree whose owner planted links
// aimed at the host: they are replaced or refused, never written through.
func TestFromHostHostileRefresh(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "root")
	if err := FromHost(dir, FromHostOptions{}); err != nil {
		t.Fatal(err)
	}
	victim := t.TempDir()
	bait := filepath.Join(victim, "bash")
	if err := os.WriteFile(bait, []byte("host file"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A file of the tree made a link to a host file: replaced by a copy.
	bash := filepath.Join(dir, "usr/bin/bash")
	if err := os.Remove(bash); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bait, bash); err != nil {
		t.Fatal(err)
	}
	if err := FromHost(dir, FromHostOptions{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(bash); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("usr/bin/bash after refresh: %v, %v", fi.Mode(), err)
	}
	// A directory of the tree made a link to a host directory: refused.
	usrBin := filepath.Join(dir, "usr/bin")
	if err := os.RemoveAll(usrBin); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, usrBin); err != nil {
		t.Fatal(err)
	}
	if err := FromHost(dir, FromHostOptions{}); err == nil {
		t.Error("refresh through a directory link to the host succeeded")
	}
	if data, _ := os.ReadFile(bait); string(data) != "host file" {
		t.Errorf("host file changed: %q", data)
	}
	if entries, _ := os.ReadDir(victim); len(entries) != 1 {
		t.Errorf("refresh wrote into the host directory: %d entries", len(entries))
	}
}
