package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jailgate/jailgate/keys"
	gossh "golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// keyLines parses a sequence of authorized_keys lines, each reported at
// its own YAML line.
func (p *parser) keyLines(n *yaml.Node, field string) []keys.Key {
	if n.Kind != yaml.SequenceNode {
		p.add(p.at(n), field, "must be a list of authorized_keys lines")
		return nil
	}
	var out []keys.Key
	for i, item := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		line := p.str(item, f)
		ks, err := keys.ParseAuthorizedKeys([]byte(line))
		if err != nil || len(ks) != 1 {
			msg := "not an authorized_keys line"
			var le *keys.LineError
			if errors.As(err, &le) {
				msg = le.Err.Error()
			}
			p.add(p.at(item), f, "%s", msg)
			continue
		}
		ks[0].Line = item.Line
		if _, err := keys.ParseOptions(ks[0].Options); err != nil {
			p.add(p.at(item), f, "%v", err)
			continue
		}
		out = append(out, ks[0])
	}
	return out
}

// keysFile reads u.KeysFile (relative to the config file), reporting bad
// lines at their place in that file.
func (p *parser) keysFile(u *User, path string) {
	if u.KeysFile == "" {
		return
	}
	field := path + ".keys_file"
	kf := u.KeysFile
	if !filepath.IsAbs(kf) {
		kf = filepath.Join(filepath.Dir(p.file), kf)
	}
	data, err := os.ReadFile(kf)
	if err != nil {
		p.add(p.fieldPos(field), field, "%s", strings.TrimPrefix(err.Error(), "open "))
		return
	}
	ks, err := keys.ParseAuthorizedKeys(data)
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		for _, e := range j.Unwrap() {
			var le *keys.LineError
			if errors.As(e, &le) {
				p.add(Pos{File: kf, Line: le.Line}, field, "%s", le.Err.Error())
			}
		}
	} else if err != nil {
		p.add(p.fieldPos(field), field, "%v", err)
	}
	for _, k := range ks {
		if _, err := keys.ParseOptions(k.Options); err != nil {
			p.add(Pos{File: kf, Line: k.Line}, field, "%v", err)
			continue
		}
		u.Keys = append(u.Keys, k)
	}
}

// keySources reads a key list given as key lines or files of them (one
// value or a list); a file is relative to the config file. With krls set,
// a file may also be a binary OpenSSH KRL (revoked_keys), which goes there.
func (p *parser) keySources(n *yaml.Node, field string, krls *[]*keys.KRL) []gossh.PublicKey {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	var out []gossh.PublicKey
	for i, item := range items {
		f := field
		if n.Kind == yaml.SequenceNode {
			f = fmt.Sprintf("%s[%d]", field, i)
		}
		v := strings.TrimSpace(p.str(item, f))
		data, src := []byte(v), Pos{}
		if !strings.Contains(v, " ") { // a path, not a key line
			path := v
			if !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(p.file), path)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				p.add(p.at(item), f, "%s", strings.TrimPrefix(err.Error(), "open "))
				continue
			}
			data, src = b, Pos{File: path}
			if keys.IsKRL(b) {
				if krls == nil {
					p.add(p.at(item), f, "%s is a KRL; only revoked_keys takes one", v)
					continue
				}
				k, err := keys.ParseKRL(b)
				if err != nil {
					p.add(p.at(item), f, "%s: %v", v, err)
					continue
				}
				*krls = append(*krls, k)
				continue
			}
		}
		ks, err := keys.ParseAuthorizedKeys(data)
		var le *keys.LineError
		switch {
		case errors.As(err, &le) && src.File != "":
			p.add(Pos{File: src.File, Line: le.Line}, f, "%s", le.Err.Error())
		case err != nil:
			p.add(p.at(item), f, "%v", err)
		}
		for _, k := range ks {
			out = append(out, k.Key)
		}
	}
	return out
}
