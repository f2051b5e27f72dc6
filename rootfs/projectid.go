package rootfs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jailgate/jailgate/internal/atomicfile"
	"github.com/jailgate/jailgate/statedir"
)

// ProjectRecord is a tenant's project id, as state_dir keeps it.
type ProjectRecord struct {
	ID   uint32 `json:"id"`
	Tree string `json:"tree"` // the tree that carries it
	Set  bool   `json:"set"`  // every file of Tree carries it (SetProject done)
}

// ReadProject reads tenant's project record; ok is false if she has none.
func ReadProject(stateDir, tenant string) (r ProjectRecord, ok bool, err error) {
	data, err := os.ReadFile(statedir.New(stateDir).ProjectRecord(tenant))
	if errors.Is(err, fs.ErrNotExist) {
		return r, false, nil
	} else if err != nil {
		return r, false, err
	}
	if err := json.Unmarshal(data, &r); err != nil || r.ID == 0 {
		return r, false, fmt.Errorf("project record of %s: bad: %v", tenant, err)
	}
	return r, true, nil
}

// projectID returns tenant's project record, making one for tree if she
// has none. Her id is taken from her host id range (base, size), which
// the host registry gives no other tenant of any state_dir on this host:
// the first of it no tenant of this state_dir ever claimed. A claim
// (statedir ProjectClaim, made with link(2): one winner) outlives her, so
// a removed tenant's id is never handed out again.
func projectID(stateDir, tenant, tree string, base, size uint32) (ProjectRecord, error) {
	if r, ok, err := ReadProject(stateDir, tenant); ok || err != nil {
		return r, err
	}
	state := statedir.New(stateDir)
	if err := os.MkdirAll(filepath.Dir(state.ProjectClaim(0)), 0o700); err != nil {
		return ProjectRecord{}, err
	}
	for id := base; id-base < size && id != 0; id++ {
		err := atomicfile.Create(state.ProjectClaim(id), []byte(tenant+"\n"), 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return ProjectRecord{}, err
		}
		r := ProjectRecord{ID: id, Tree: tree}
		data, _ := json.Marshal(r)
		err = atomicfile.Create(state.ProjectRecord(tenant), data, 0o600)
		if errors.Is(err, fs.ErrExist) { // a login beside this one made it: hers stands
			r, _, err = ReadProject(stateDir, tenant)
		}
		return r, err
	}
	return ProjectRecord{}, fmt.Errorf("no project id left for %s in her id range %d+%d: every one was handed out before", tenant, base, size)
}

// ApplyProject bounds tenant's tree to q with a project quota: her
// project id (her record's, or a new one from her id range base, size) on
// every file of tree, once per tree, then q's limits for it.
func ApplyProject(stateDir, tenant, tree string, base, size uint32, q Quota) error {
	r, err := projectID(stateDir, tenant, tree, base, size)
	if err != nil {
		return err
	}
	// Set once per tree: again if her tree is not the one recorded, the
	// walk was cut short, or her tree was made anew (a tenant reset
	// removes her layer dir; an operator may remake her rootfs).
	if id, inherit, err := ProjectOf(tree); !r.Set || r.Tree != tree || err != nil || id != r.ID || !inherit {
		if err := SetProject(tree, r.ID); err != nil {
			return fmt.Errorf("project id %d on %s: %w", r.ID, tree, err)
		}
		r.Tree, r.Set = tree, true
		data, _ := json.Marshal(r)
		if err := atomicfile.WriteFile(statedir.New(stateDir).ProjectRecord(tenant), data, 0o600); err != nil {
			return err
		}
	}
	return SetProjectLimit(tree, r.ID, q.Bytes, q.Inodes)
}

// SetTenantProjectLimit sets q's limits on tenant's project, live (a
// reload): nothing if her tree carries no project id yet, which her next
// login gives it, with q.
func SetTenantProjectLimit(stateDir, tenant, tree string, q Quota) error {
	r, ok, err := ReadProject(stateDir, tenant)
	if err != nil || !ok || !r.Set || r.Tree != tree {
		return err
	}
	return SetProjectLimit(tree, r.ID, q.Bytes, q.Inodes)
}
