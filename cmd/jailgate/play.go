package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/jailgate/jailgate/statedir"
)

// cmdRecordings lists the session recordings under state_dir/recordings.
func cmdRecordings(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return &usageError{"recordings: want a subcommand: list"}
	}
	fset := flag.NewFlagSet("recordings list", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	path := fset.String("config", "/etc/jailgate/jailgate.yaml", "configuration file")
	tenant := fset.String("tenant", "", "only this tenant's recordings")
	if err := fset.Parse(args[1:]); err != nil {
		return flagError(fset, err)
	}
	c, err := loadConfig(*path)
	if err != nil {
		return err
	}
	root := statedir.New(c.StateDir).TenantRecordings(*tenant) // every tenant's without --tenant
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return nil // no recordings yet
			}
			return err
		}
		if d.Type().IsRegular() && filepath.Ext(p) == ".cast" {
			fi, _ := d.Info()
			fmt.Fprintf(stdout, "%s\t%d bytes\n", p, fi.Size())
		}
		return nil
	})
}

// cmdPlay replays an asciicast v2 recording in this terminal with its
// timing, sped up by --speed; pauses longer than 2 s are cut to 2 s.
func cmdPlay(args []string, stdout io.Writer) error {
	fset := flag.NewFlagSet("play", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	speed := fset.Float64("speed", 1, "playback speed")
	if err := fset.Parse(args); err != nil {
		return flagError(fset, err)
	}
	if fset.NArg() != 1 || *speed <= 0 {
		return &usageError{"play: want [--speed N] FILE"}
	}
	f, err := os.Open(fset.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	if !sc.Scan() {
		return fmt.Errorf("play %s: empty file", fset.Arg(0))
	}
	var hdr struct{ Version int }
	if err := json.Unmarshal(sc.Bytes(), &hdr); err != nil || hdr.Version != 2 {
		return fmt.Errorf("play %s: not an asciicast v2 file", fset.Arg(0))
	}
	last := 0.0
	for line := 2; sc.Scan(); line++ {
		var ev []json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			return fmt.Errorf("play %s:%d: not an event", fset.Arg(0), line)
		}
		var at float64
		var kind, data string
		json.Unmarshal(ev[0], &at)
		json.Unmarshal(ev[1], &kind)
		json.Unmarshal(ev[2], &data)
		if kind != "o" {
			continue
		}
		wait := min(at-last, 2) / *speed
		time.Sleep(time.Duration(wait * float64(time.Second)))
		last = at
		io.WriteString(stdout, data)
	}
	return sc.Err()
}
