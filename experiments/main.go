// Command experiments re-runs gradlab's reproductions of published optimizer claims.
//
//	go run ./experiments                         # the default suite, outputs under results/
//	go run ./experiments -list                   # every experiment with its one-line claim
//	go run ./experiments [-out DIR] [-quick|-full] [-opt adam,sgd] NAME...
//
// Each experiment writes results/<name>/report.md, trajectories.csv, PNG plots and run.json (its
// configuration, seed and machine). Every registered solver (solvers.Kinds) is run; solvers that cannot
// be built are reported as skipped. New experiments are one more harness.Register call (see harness).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gradlab/gradlab/experiments/harness"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command with its arguments and streams; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("experiments", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "results", "output directory; each experiment writes DIR/<name>/")
	quick := fs.Bool("quick", false, "quick smoke-test size (seconds)")
	full := fs.Bool("full", false, "full size (longer budgets)")
	list := fs.Bool("list", false, "list the experiments and their claims, then exit")
	seed := fs.Int64("seed", 1, "base seed, recorded in run.json (the current experiments are deterministic)")
	opt := fs.String("opt", "", "comma-separated solver kinds to run (default: every registered kind)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: experiments [flags] [NAME...]\n\nWith no NAME the default suite runs. Flags:\n")
		fs.PrintDefaults()
	}
	// Allow flags after names: parse, take one name, parse the rest again.
	var names []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if *quick && *full {
		fmt.Fprintln(stderr, "experiments: -quick and -full are exclusive")
		return 2
	}
	if *list {
		for _, e := range harness.Experiments() {
			def := " "
			if e.Default {
				def = "*"
			}
			fmt.Fprintf(stdout, "%s %-20s %s\n", def, e.Name, e.Claim)
		}
		fmt.Fprintln(stdout, "(* = in the default suite)")
		return 0
	}
	var exps []*harness.Experiment
	if len(names) == 0 {
		for _, e := range harness.Experiments() {
			if e.Default {
				exps = append(exps, e)
			}
		}
	}
	for _, n := range names {
		e, ok := harness.Lookup(n)
		if !ok {
			fmt.Fprintf(stderr, "experiments: unknown experiment %q (try -list)\n", n)
			return 2
		}
		exps = append(exps, e)
	}
	cfg := harness.Config{Out: *out, Seed: *seed, Stderr: stderr, Args: append([]string{"experiments"}, args...)}
	switch {
	case *quick:
		cfg.Size = harness.Quick
	case *full:
		cfg.Size = harness.Full
	}
	if *opt != "" {
		for _, k := range strings.Split(*opt, ",") {
			if k = strings.TrimSpace(k); k != "" {
				cfg.Optimizers = append(cfg.Optimizers, k)
			}
		}
	}
	return runSuite(cfg, exps, stdout)
}

// runSuite runs exps, writes DIR/summary.md and prints one line per experiment; it returns 1 if any
// experiment failed.
func runSuite(cfg harness.Config, exps []*harness.Experiment, stdout io.Writer) int {
	start := time.Now()
	results := harness.Run(cfg, exps)
	total := time.Since(start)
	var rep harness.Report
	rep.H1("Experiment run summary")
	rep.P("Started %s, %s size, total wall time %.2f s.", start.Format(time.RFC3339), cfg.Size, total.Seconds())
	var rows [][]string
	code := 0
	for _, r := range results {
		status := "ok"
		if r.Err != nil {
			status = "FAILED: " + r.Err.Error()
			code = 1
		}
		rows = append(rows, []string{fmt.Sprintf("[%s](%s/report.md)", r.Name, r.Name), status, fmt.Sprintf("%.2f s", r.Duration.Seconds())})
		fmt.Fprintf(stdout, "%-20s %-6s %6.2fs  %s\n", r.Name, status, r.Duration.Seconds(), filepath.Join(r.Dir, "report.md"))
	}
	rep.Table([]string{"experiment", "status", "wall time"}, rows)
	if err := os.MkdirAll(cfg.Out, 0o755); err == nil {
		if err := os.WriteFile(filepath.Join(cfg.Out, "summary.md"), []byte(rep.String()), 0o644); err != nil {
			fmt.Fprintf(stdout, "writing summary: %v\n", err)
			code = 1
		}
	}
	fmt.Fprintf(stdout, "total %.2fs\n", total.Seconds())
	return code
}
