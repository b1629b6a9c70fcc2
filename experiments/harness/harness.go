// Package harness is the reusable part of gradlab's experiment runner: a registry of experiments, the
// per-experiment Context (output directory, size, seed, progress lines, run.json), and helpers for CSV
// files, Markdown reports, PNG plots and for building and driving gradlab solvers on small objectives.
//
// An experiment is one more entry in the registry:
//
//	func init() {
//		harness.Register(&harness.Experiment{
//			Name:    "my-experiment",
//			Claim:   "The paper's claim, quoted.",
//			Default: true,
//			Run:     func(ctx *harness.Context) error { ... },
//		})
//	}
//
// Run writes everything under ctx.Dir: report.md, CSV files, plots; the harness adds run.json.
package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gradlab/gradlab/solvers"
)

// Experiment is one reproducible experiment: a name (its directory under the output root), the claim it
// tests (one line, shown by -list) and the function that runs it.
type Experiment struct {
	// Name is the experiment's identifier and the name of its output directory.
	Name string
	// Claim is a one-line statement of what the experiment tests (the paper's claim, quoted).
	Claim string
	// Default says whether the experiment is part of the default suite (no names on the command line).
	Default bool
	// Run performs the experiment, writing its outputs through ctx.
	Run func(ctx *Context) error
}

var (
	regMu    sync.Mutex
	registry = map[string]*Experiment{}
)

// Register adds e to the registry. It panics on an empty or duplicate name or a nil Run, which are
// programming errors.
func Register(e *Experiment) {
	regMu.Lock()
	defer regMu.Unlock()
	if e == nil || e.Name == "" || e.Run == nil {
		panic("harness.Register: experiment needs a name and a Run function")
	}
	if _, dup := registry[e.Name]; dup {
		panic("harness.Register: duplicate experiment " + e.Name)
	}
	registry[e.Name] = e
}

// Experiments returns every registered experiment, sorted by name.
func Experiments() []*Experiment {
	regMu.Lock()
	defer regMu.Unlock()
	out := make([]*Experiment, 0, len(registry))
	for _, e := range registry {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the experiment registered under name.
func Lookup(name string) (*Experiment, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	e, ok := registry[name]
	return e, ok
}

// Size selects how big a run is: Quick for tests and smoke runs, Default for the published suite, Full
// for longer runs.
type Size int

const (
	// Default is the size of `go run ./experiments`.
	Default Size = iota
	// Quick is a few-second smoke run.
	Quick
	// Full is a longer run with larger budgets.
	Full
)

// String returns "quick", "default" or "full".
func (s Size) String() string {
	switch s {
	case Quick:
		return "quick"
	case Full:
		return "full"
	}
	return "default"
}

// Config is what a harness run is configured with.
type Config struct {
	// Out is the output root; each experiment writes Out/<name>/.
	Out string
	// Size is the run size.
	Size Size
	// Seed is the base seed handed to every experiment (recorded in run.json).
	Seed int64
	// Optimizers, if non-empty, restricts the solver kinds to these names (variants derived from a kind,
	// such as "sgdm" from "sgd", are kept when their kind is).
	Optimizers []string
	// Kinds lists the solver kinds to run; nil means solvers.Kinds.
	Kinds func() []string
	// Stderr receives progress lines; nil means os.Stderr.
	Stderr io.Writer
	// Args is the command line, recorded in run.json.
	Args []string
}

// Result is the outcome of one experiment in a harness run.
type Result struct {
	Name     string
	Dir      string
	Duration time.Duration
	Err      error
}

// Run runs the experiments in order, each in its own directory under cfg.Out, and writes run.json for
// each. An experiment that fails (or panics) is reported in its Result and the others still run.
func Run(cfg Config, exps []*Experiment) []Result {
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Kinds == nil {
		cfg.Kinds = solvers.Kinds
	}
	if cfg.Out == "" {
		cfg.Out = "results"
	}
	var out []Result
	for _, e := range exps {
		out = append(out, runOne(cfg, e))
	}
	return out
}

func runOne(cfg Config, e *Experiment) (res Result) {
	dir := filepath.Join(cfg.Out, e.Name)
	res = Result{Name: e.Name, Dir: dir}
	ctx := &Context{
		Name:    e.Name,
		Dir:     dir,
		Size:    cfg.Size,
		Seed:    cfg.Seed,
		stderr:  cfg.Stderr,
		kinds:   cfg.Kinds,
		filter:  cfg.Optimizers,
		isTerm:  isTerminal(cfg.Stderr),
		skipped: map[string]string{},
	}
	start := time.Now()
	ctx.start = start
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Err = err
		return res
	}
	ctx.Logf("start (%s size)", cfg.Size)
	func() {
		defer func() {
			if r := recover(); r != nil {
				res.Err = fmt.Errorf("panic: %v", r)
			}
		}()
		res.Err = e.Run(ctx)
	}()
	res.Duration = time.Since(start)
	ctx.finishProgress()
	info := RunInfo{
		Experiment:      e.Name,
		Claim:           e.Claim,
		Size:            cfg.Size.String(),
		Seed:            cfg.Seed,
		Deterministic:   true,
		Config:          ctx.config,
		GoVersion:       runtime.Version(),
		GOOS:            runtime.GOOS,
		GOARCH:          runtime.GOARCH,
		NumCPU:          runtime.NumCPU(),
		GOMAXPROCS:      runtime.GOMAXPROCS(0),
		Start:           start.Format(time.RFC3339),
		DurationSeconds: res.Duration.Seconds(),
		Args:            cfg.Args,
		SolverKinds:     cfg.Kinds(),
		Skipped:         ctx.skipped,
		Files:           ctx.files,
	}
	if h, err := os.Hostname(); err == nil {
		info.Hostname = h
	}
	if res.Err != nil {
		info.Error = res.Err.Error()
	}
	if err := writeJSON(filepath.Join(dir, "run.json"), info); err != nil && res.Err == nil {
		res.Err = err
	}
	if res.Err != nil {
		ctx.Logf("FAILED after %.2fs: %v", res.Duration.Seconds(), res.Err)
	} else {
		ctx.Logf("done in %.2fs, outputs in %s", res.Duration.Seconds(), dir)
	}
	return res
}

// RunInfo is the content of run.json: everything needed to reproduce a run.
type RunInfo struct {
	Experiment      string            `json:"experiment"`
	Claim           string            `json:"claim"`
	Size            string            `json:"size"`
	Seed            int64             `json:"seed"`
	Deterministic   bool              `json:"deterministic"`
	Config          any               `json:"config"`
	GoVersion       string            `json:"go_version"`
	GOOS            string            `json:"goos"`
	GOARCH          string            `json:"goarch"`
	NumCPU          int               `json:"num_cpu"`
	GOMAXPROCS      int               `json:"gomaxprocs"`
	Hostname        string            `json:"hostname"`
	Start           string            `json:"start"`
	DurationSeconds float64           `json:"duration_seconds"`
	Args            []string          `json:"args"`
	SolverKinds     []string          `json:"solver_kinds"`
	Skipped         map[string]string `json:"skipped_optimizers,omitempty"`
	Files           []string          `json:"files"`
	Error           string            `json:"error,omitempty"`
}

func writeJSON(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Context is what an experiment's Run receives: where to write, how big to be, the seed, and progress
// and bookkeeping helpers. Its methods are safe for concurrent use unless stated otherwise.
type Context struct {
	// Name is the experiment's name.
	Name string
	// Dir is the experiment's output directory (created before Run).
	Dir string
	// Size is the run size.
	Size Size
	// Seed is the base seed; deterministic experiments record it and may ignore it.
	Seed int64

	stderr  io.Writer
	isTerm  bool
	kinds   func() []string
	filter  []string
	start   time.Time
	mu      sync.Mutex
	config  any
	files   []string
	skipped map[string]string

	lastProg  time.Time
	progShown bool
	progLabel string
}

// Pick returns the value for the context's size.
func (c *Context) Pick(quick, def, full int) int {
	switch c.Size {
	case Quick:
		return quick
	case Full:
		return full
	}
	return def
}

// Path returns the path of a file in the experiment's directory and records it in run.json's file list.
func (c *Context) Path(name string) string {
	c.mu.Lock()
	c.files = append(c.files, name)
	c.mu.Unlock()
	return filepath.Join(c.Dir, name)
}

// SetConfig records the experiment's configuration (any JSON-encodable value) for run.json.
func (c *Context) SetConfig(v any) {
	c.mu.Lock()
	c.config = v
	c.mu.Unlock()
}

// Skip records that an optimizer was not run and why; it appears in run.json.
func (c *Context) Skip(name, why string) {
	c.mu.Lock()
	c.skipped[name] = why
	c.mu.Unlock()
}

// Logf prints one plain line on stderr, prefixed by the experiment's name.
func (c *Context) Logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearBarLocked()
	fmt.Fprintf(c.stderr, "[%s] %s\n", c.Name, fmt.Sprintf(format, args...))
}

// Progress reports that done of total units of the phase label are finished. On a terminal it draws a
// one-line bar; otherwise it prints a plain line at most every two seconds (and at the end of a phase).
func (c *Context) Progress(label string, done, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	el := now.Sub(c.start).Seconds()
	if c.isTerm {
		if now.Sub(c.lastProg) < 100*time.Millisecond && done < total {
			return
		}
		c.lastProg = now
		const width = 30
		n := 0
		if total > 0 {
			n = done * width / total
		}
		bar := strings.Repeat("#", n) + strings.Repeat(".", width-n)
		fmt.Fprintf(c.stderr, "\r[%s] %s [%s] %d/%d %.1fs", c.Name, label, bar, done, total, el)
		c.progShown = true
		c.progLabel = label
		if done >= total {
			fmt.Fprintln(c.stderr)
			c.progShown = false
		}
		return
	}
	if done < total && now.Sub(c.lastProg) < 2*time.Second && c.progLabel == label {
		return
	}
	c.lastProg = now
	c.progLabel = label
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	fmt.Fprintf(c.stderr, "[%s] %s %d/%d (%.0f%%) %.1fs\n", c.Name, label, done, total, pct, el)
}

func (c *Context) clearBarLocked() {
	if c.isTerm && c.progShown {
		fmt.Fprintln(c.stderr)
		c.progShown = false
	}
}

func (c *Context) finishProgress() {
	c.mu.Lock()
	c.clearBarLocked()
	c.mu.Unlock()
}

// ParallelFor calls f(i) for i in [0, n) on up to GOMAXPROCS goroutines, reporting progress under
// label. Results must be written by index so that the outcome does not depend on scheduling.
func (c *Context) ParallelFor(label string, n int, f func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
	var (
		wg   sync.WaitGroup
		next = make(chan int)
		dmu  sync.Mutex
		done int
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
				dmu.Lock()
				done++
				d := done
				dmu.Unlock()
				c.Progress(label, d, n)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil {
		return false
	}
	return st.Mode()&os.ModeCharDevice != 0
}
