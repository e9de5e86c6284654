package xds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ztunnel-go/ztunnel/workload"
)

// debounce is how long the file must stay quiet after a change before it
// is re-read: editors and ConfigMap updates arrive as bursts of events.
const debounce = 100 * time.Millisecond

// LocalSource feeds a Store from a local config (LOCAL_XDS_PATH or
// LOCAL_XDS). Its fields are read once, by Run.
type LocalSource struct {
	// Path is the config file; when set it wins over Inline and is
	// watched for changes.
	Path string
	// Inline is the config itself (LOCAL_XDS), used when Path is empty.
	Inline string
	// Store receives the configuration; required.
	Store *workload.Store
	// Logger reports reloads and rejected edits; nil discards.
	Logger *slog.Logger
}

// Run loads the config into the store and calls ready (when non-nil). A
// config that cannot be read or is invalid at start is returned as an
// error, before ready. With a Path, Run then watches the file's directory —
// so editors' write-and-rename and Kubernetes ConfigMap symlink swaps are
// seen — and re-applies the file after each burst of changes to it (other
// files in those directories are ignored); an invalid
// edit is logged and the last good config stays. Run returns nil when ctx
// ends. It starts no goroutines of its own.
func (l *LocalSource) Run(ctx context.Context, ready func()) error {
	if l.Store == nil {
		return errors.New("local config: no store")
	}
	log := l.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ready == nil {
		ready = func() {}
	}
	if l.Path == "" {
		if err := LoadLocal(l.Store, []byte(l.Inline)); err != nil {
			return fmt.Errorf("LOCAL_XDS: %w", err)
		}
		l.logApplied(log, "inline")
		ready()
		<-ctx.Done()
		return nil
	}

	// Watch before the first read so no edit slips between the two.
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("local config: watching %s: %w", l.Path, err)
	}
	defer watcher.Close()
	watched := map[string]bool{}
	watch := func(dir string) error {
		if watched[dir] {
			return nil
		}
		if err := watcher.Add(dir); err != nil {
			return err
		}
		watched[dir] = true
		return nil
	}
	if err := watch(filepath.Dir(l.Path)); err != nil {
		return fmt.Errorf("local config: watching %s: %w", l.Path, err)
	}
	// When the path is a symlink into another directory, watch that too
	// (best effort: a dangling link is reported by the read below).
	target := ""
	watchTarget := func() {
		if real, err := filepath.EvalSymlinks(l.Path); err == nil {
			target = filepath.Clean(real)
			if err := watch(filepath.Dir(real)); err != nil {
				log.Warn("cannot watch local config's target directory", "path", real, "error", err)
			}
		}
	}
	path := filepath.Clean(l.Path)
	// concerns says whether an event in a watched directory may change what
	// the path reads: the path itself, its symlink target, or the kubelet's
	// hidden "..data" swap names. Other files in the same directories (a log
	// written beside the config, say) must not hold the debounce off forever.
	concerns := func(name string) bool {
		name = filepath.Clean(name)
		return name == path || name == target || strings.HasPrefix(filepath.Base(name), "..")
	}
	watchTarget()

	last, err := os.ReadFile(l.Path)
	if err != nil {
		return fmt.Errorf("local config: %w", err)
	}
	if err := LoadLocal(l.Store, last); err != nil {
		return fmt.Errorf("local config %s: %w", l.Path, err)
	}
	l.logApplied(log, l.Path)
	ready()

	timer := time.NewTimer(debounce)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-watcher.Events:
			if !ok {
				return errors.New("local config: watcher closed")
			}
			if concerns(ev.Name) {
				timer.Reset(debounce) // the content, re-read after the burst, decides
			}
		case err, ok := <-watcher.Errors:
			if !ok {
				return errors.New("local config: watcher closed")
			}
			log.Warn("local config watch error", "path", l.Path, "error", err)
		case <-timer.C:
			watchTarget()
			data, err := os.ReadFile(l.Path)
			if err != nil {
				log.Error("cannot read local config; keeping the last good config", "path", l.Path, "error", err)
				continue
			}
			if bytes.Equal(data, last) {
				continue
			}
			last = data
			if err := LoadLocal(l.Store, data); err != nil {
				log.Error("local config rejected; keeping the last good config", "path", l.Path, "error", err)
				continue
			}
			l.logApplied(log, l.Path)
		}
	}
}

func (l *LocalSource) logApplied(log *slog.Logger, from string) {
	snap := l.Store.Snapshot()
	log.Info("local config applied", "source", from, "version", snap.Version(),
		"workloads", snap.NumWorkloads(), "services", snap.NumServices(), "policies", snap.Policies().Len())
}
