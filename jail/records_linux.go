package jail

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jailgate/jailgate/internal/atomicfile"
)

// EnvRecord is what a later gateway (a restart after a crash, the new side
// of an upgrade) needs to find a live environment and adopt it. One file
// per environment, <name>.json under Options.RecordDir (0700 root, on the
// host only: no jail reaches it), beside <name>.sock, the init's listening
// control socket. The init's token is in it: whoever reads the record may
// drive the init, so it is 0600 root.
type EnvRecord struct {
	Name    string    `json:"name"`   // the environment's (and its cgroup's) name
	Tenant  string    `json:"tenant"` // her name in the config
	Key     string    `json:"key"`    // the mode key the gateway shares it by (tenant/alice, conn/…, session/…)
	IDMap   IDMap     `json:"idmap"`
	Spec    string    `json:"spec"`  // a hash of the settings it was started with
	Pid     int       `json:"pid"`   // the init's host pid
	Start   uint64    `json:"start"` // the init's start time (clock ticks after boot): a recycled pid does not match
	Token   string    `json:"token"`
	Created time.Time `json:"created"`
	Network string    `json:"network"`
	NAT     *natNet   `json:"nat,omitempty"`   // NetworkNAT: her eth0
	Veth    string    `json:"veth,omitempty"`  // NetworkNAT: the host end
	Owner   uint32    `json:"owner,omitempty"` // the host uid that created its user namespace (owners_linux.go)
}

// maxRecord bounds a record file: anything larger is not one of ours.
const maxRecord = 64 << 10

// recordPath and socketPath name an environment's files under dir.
func recordPath(dir, name string) string { return filepath.Join(dir, name+".json") }
func socketPath(dir, name string) string { return filepath.Join(dir, name+".sock") }

// listenControl binds the socket later gateways reach the init on, when
// environments are adoptable (Options.RecordDir), and makes its token.
func listenControl(s *starting) error {
	e := s.e
	var tok [32]byte
	rand.Read(tok[:])
	e.token = hex.EncodeToString(tok[:])
	dir := e.sup.opts.RecordDir
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := socketPath(dir, e.name)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("control listener: %w", err)
	}
	f := os.NewFile(uintptr(fd), path)
	os.Remove(path)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		f.Close()
		return fmt.Errorf("bind %s: %w", path, err)
	}
	s.undo = append(s.undo, func() { os.Remove(path) })
	if err := os.Chmod(path, 0o600); err != nil {
		f.Close()
		return err
	}
	if err := unix.Listen(fd, 16); err != nil {
		f.Close()
		return fmt.Errorf("listen %s: %w", path, err)
	}
	s.listen = f
	return nil
}

// writeRecord writes the environment's record once it is ready.
func writeRecord(s *starting) error {
	e := s.e
	dir := e.sup.opts.RecordDir
	if dir == "" {
		return nil
	}
	pid := e.cmd.Process.Pid
	start, err := procStart(pid)
	if err != nil {
		return err
	}
	r := &EnvRecord{Name: e.name, Tenant: e.spec.Tenant, Key: e.key, IDMap: e.spec.IDMap, Spec: e.spec.hash(),
		Pid: pid, Start: start, Token: e.token, Created: time.Now().UTC(), Network: s.network, NAT: s.nat, Veth: s.veth, Owner: e.owner}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := recordPath(dir, e.name)
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	s.undo = append(s.undo, func() { os.Remove(path) })
	if err := linkKey(dir, e.key, e.name); err != nil {
		return err
	}
	s.undo = append(s.undo, func() { unlinkKey(dir, e.key, e.name) })
	return nil
}

// hash names the settings an environment starts from (EnvRecord.Spec):
// a later gateway can tell whether the config still asks for the same.
func (spec *EnvSpec) hash() string {
	b, _ := json.Marshal(struct {
		Rootfs, Hostname, Network, Seccomp string
		IDMap                              IDMap
		Limits                             Limits
		Caps                               []string
		Egress                             Egress
		DNS                                []netip.Addr
		Rlimits                            map[string]uint64
	}{spec.Rootfs, spec.Hostname, spec.Network, spec.Seccomp, spec.IDMap, spec.Limits, spec.Caps, spec.Egress,
		spec.DNS, spec.Rlimits})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// removeRecord removes an environment's record and socket.
func removeRecord(dir, name string) {
	if dir == "" {
		return
	}
	os.Remove(recordPath(dir, name))
	os.Remove(socketPath(dir, name))
}

// procStart reads a process's start time (field 22 of /proc/PID/stat).
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command (field 2) may hold spaces and parentheses: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("malformed /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// RecordError is a record that could not be used: unreadable, corrupt or
// truncated, or of an environment that is gone. ReadRecords removes it.
type RecordError struct {
	Path string
	Err  error
}

func (e *RecordError) Error() string { return fmt.Sprintf("environment record %s: %v", e.Path, e.Err) }

// ReadRecords returns the records under dir whose init still runs (its pid
// and start time match), and one error per record it skipped and removed,
// with its socket: corrupt, truncated, or of an environment that is gone.
func ReadRecords(dir string) ([]*EnvRecord, []error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, []error{err}
	}
	var recs []*EnvRecord
	var errs []error
	for _, ent := range ents {
		name, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		r, err := readRecord(dir, name)
		if err != nil {
			removeRecord(dir, name)
			errs = append(errs, &RecordError{Path: recordPath(dir, name), Err: err})
			continue
		}
		recs = append(recs, r)
	}
	// Sockets whose record is gone (a start interrupted between the two),
	// and key links to no record.
	for _, ent := range ents {
		if name, ok := strings.CutSuffix(ent.Name(), ".sock"); ok {
			if _, err := os.Lstat(recordPath(dir, name)); errors.Is(err, fs.ErrNotExist) {
				os.Remove(filepath.Join(dir, ent.Name()))
			}
		}
		if strings.HasPrefix(ent.Name(), "key-") && ent.Type() == fs.ModeSymlink {
			sweepKeyLink(dir, filepath.Join(dir, ent.Name()))
		}
	}
	return recs, errs
}

// readRecord reads and checks one record, and that its init still runs.
func readRecord(dir, name string) (*EnvRecord, error) {
	f, err := os.OpenFile(recordPath(dir, name), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, maxRecord+1)
	n, _ := f.Read(b)
	if n > maxRecord {
		return nil, errors.New("larger than any record")
	}
	var r EnvRecord
	dec := json.NewDecoder(bytes.NewReader(b[:n]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("corrupt: %w", err)
	}
	switch {
	case r.Name != name:
		return nil, fmt.Errorf("corrupt: names environment %q", r.Name)
	case r.Pid <= 1 || r.Token == "" || r.Tenant == "" || r.Key == "":
		return nil, errors.New("corrupt: a field is missing")
	}
	if start, err := procStart(r.Pid); err != nil || start != r.Start {
		return nil, errors.New("its init is gone")
	}
	return &r, nil
}
