package solvers

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pkg/errors"
	G "gorgonia.org/gorgonia"
)

// goldenCase is one golden-trajectory/v1 file (see testdata/golden/README.md).
type goldenCase struct {
	Format    string                     `json:"format"`
	Case      string                     `json:"case"`
	Optimizer string                     `json:"optimizer"`
	Reference string                     `json:"reference"`
	Dtype     string                     `json:"dtype"`
	Hyper     map[string]json.RawMessage `json:"hyper"`
	Params    []struct {
		Name  string    `json:"name"`
		Shape []int     `json:"shape"`
		Init  []float64 `json:"init"`
	} `json:"params"`
	Problem *struct {
		Kind string      `json:"kind"`
		A    [][]float64 `json:"a"`
		C    [][]float64 `json:"c"`
	} `json:"problem"`
	Steps []struct {
		Grads    [][]float64 `json:"grads"`
		Loss     *float64    `json:"loss"`
		Expected [][]float64 `json:"expected"`
	} `json:"steps"`
	Tolerance struct {
		Rtol float64 `json:"rtol"`
		Atol float64 `json:"atol"`
	} `json:"tolerance"`
}

// errNotBuilt marks a golden case whose optimizer gradlab does not have yet: it is skipped, not passed.
var errNotBuilt = errors.New("optimizer not built yet")

func goldenDir() string {
	if d := os.Getenv("GOLDEN_DIR"); d != "" {
		return d
	}
	return filepath.Join("testdata", "golden")
}

func loadGolden(path string) (*goldenCase, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c goldenCase
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, errors.Wrapf(err, "parse %s", path)
	}
	if c.Format != "golden-trajectory/v1" {
		return nil, errors.Errorf("%s: unknown format %q", path, c.Format)
	}
	return &c, nil
}

// hyperNumber reads a numeric or boolean hyperparameter; ok is false for strings and null.
func (c *goldenCase) hyperNumber(key string) (float64, bool) {
	raw, ok := c.Hyper[key]
	if !ok {
		return 0, false
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return f, true
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		if b {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func (c *goldenCase) hyperString(key string) string {
	var s string
	if raw, ok := c.Hyper[key]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	return s
}

// options turns the case's hyperparameters with the given prefix into Set options, skipping the keys in skip.
func (c *goldenCase) options(prefix string, skip ...string) []Option {
	var opts []Option
	keys := make([]string, 0, len(c.Hyper))
	for k := range c.Hyper {
		keys = append(keys, k)
	}
	sort.Strings(keys)
outer:
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		name := strings.TrimPrefix(k, prefix)
		if prefix == "" && strings.HasPrefix(k, "base_") {
			continue
		}
		for _, s := range skip {
			if s == name {
				continue outer
			}
		}
		if v, ok := c.hyperNumber(k); ok {
			opts = append(opts, Set(name, v))
		}
	}
	return opts
}

// newParams builds the case's parameters in its dtype.
func (c *goldenCase) newParams() []*Param {
	ps := make([]*Param, len(c.Params))
	for i, p := range c.Params {
		if c.Dtype == "float32" {
			ps[i] = NewParamFrom(p.Name, p.Shape, toF32(p.Init))
		} else {
			ps[i] = NewParamFrom(p.Name, p.Shape, append([]float64(nil), p.Init...))
		}
	}
	return ps
}

func toF32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// setGrad writes g into p's gradient in p's dtype.
func setGrad(p *Param, g []float64) {
	if d, ok := p.GradTensor().Data().([]float32); ok {
		for i := range d {
			d[i] = float32(g[i])
		}
		return
	}
	copy(p.GradTensor().Data().([]float64), g)
}

func values(p *Param) []float64 {
	switch d := p.Tensor().Data().(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return append([]float64(nil), d...)
	}
	panic("unreachable")
}

// problemGrad evaluates the case's problem at the parameters, writes the gradient (in the case dtype)
// and returns the loss.
func (c *goldenCase) problemGrad(ps []*Param) float64 {
	f32 := c.Dtype == "float32"
	round := func(x float64) float64 {
		if f32 {
			return float64(float32(x))
		}
		return x
	}
	switch c.Problem.Kind {
	case "quadratic":
		loss := 0.0
		for k, p := range ps {
			x := values(p)
			g := make([]float64, len(x))
			for i := range x {
				d := round(x[i] - c.Problem.C[k][i])
				g[i] = round(c.Problem.A[k][i] * d)
				loss += 0.5 * c.Problem.A[k][i] * d * d
			}
			setGrad(p, g)
		}
		return loss
	case "rosenbrock":
		xy := values(ps[0])
		x, y := xy[0], xy[1]
		setGrad(ps[0], []float64{-2*(1-x) - 400*x*(y-x*x), 200 * (y - x*x)})
		return (1-x)*(1-x) + 100*(y-x*x)*(y-x*x)
	}
	panic("unknown problem " + c.Problem.Kind)
}

// torchLayout lists the optimizers whose rule depends on which axis holds the output units. The golden
// files store tensors in PyTorch's layout (output units first); gradlab's default is Gorgonia's (output
// units last), so such cases are run on tensors with their axes reversed, and compared likewise.
var torchLayout = map[string]bool{"adamp": true, "sgdp": true, "muon": true, "muon_moonlight": true}

// reverseAxes returns data (row-major, shape) with its axes in reverse order, and the reversed shape.
func reverseAxes(data []float64, shape []int) ([]float64, []int) {
	n := len(shape)
	rs := make([]int, n)
	for i := range shape {
		rs[i] = shape[n-1-i]
	}
	out := make([]float64, len(data))
	idx := make([]int, n)
	for k := range data {
		// multi-index of k in shape
		r := k
		for d := n - 1; d >= 0; d-- {
			idx[d] = r % shape[d]
			r /= shape[d]
		}
		// flat index in the reversed shape
		j := 0
		for d := 0; d < n; d++ {
			j = j*rs[d] + idx[n-1-d]
		}
		out[j] = data[k]
	}
	return out, rs
}

// toGradlabLayout reverses the axes of every tensor of 2 or more dimensions in the case.
func (c *goldenCase) toGradlabLayout() {
	for i := range c.Params {
		sh := c.Params[i].Shape
		if len(sh) < 2 {
			continue
		}
		for k := range c.Steps {
			if c.Steps[k].Grads != nil {
				c.Steps[k].Grads[i], _ = reverseAxes(c.Steps[k].Grads[i], sh)
			}
			c.Steps[k].Expected[i], _ = reverseAxes(c.Steps[k].Expected[i], sh)
		}
		c.Params[i].Init, c.Params[i].Shape = reverseAxes(c.Params[i].Init, sh)
	}
}

// goldenRunner drives one case; it returns errNotBuilt for optimizers gradlab lacks.
func runGolden(c *goldenCase) error { return runGoldenLayout(c, false) }

// runGoldenLayout runs c; with channelFirst the tensors stay in PyTorch's layout and the solver is told
// so by the "channel_first" flag instead.
func runGoldenLayout(c *goldenCase, channelFirst bool) error {
	if torchLayout[c.Optimizer] && !channelFirst {
		c.toGradlabLayout()
	}
	if channelFirst {
		c.Hyper["channel_first"] = json.RawMessage("true")
	}
	ps := c.newParams()
	vgs := Params(ps...)
	check := func(step int, expected [][]float64) error {
		for k, p := range ps {
			got := values(p)
			for i, want := range expected[k] {
				if math.Abs(got[i]-want) > c.Tolerance.Atol+c.Tolerance.Rtol*math.Abs(want) {
					return errors.Errorf("step %d param %s[%d]: got %.17g want %.17g", step+1, p.Name(), i, got[i], want)
				}
			}
		}
		return nil
	}
	checkLoss := func(step int, got float64) error {
		if want := c.Steps[step].Loss; want != nil && math.Abs(got-*want) > c.Tolerance.Atol+c.Tolerance.Rtol*math.Abs(*want) {
			return errors.Errorf("step %d loss: got %.17g want %.17g", step+1, got, *want)
		}
		return nil
	}
	drive, err := goldenDriver(c, ps, vgs)
	if err != nil {
		return err
	}
	for k, st := range c.Steps {
		loss, err := drive(k)
		if err != nil {
			return errors.Wrapf(err, "step %d", k+1)
		}
		if err := checkLoss(k, loss); err != nil {
			return err
		}
		if err := check(k, st.Expected); err != nil {
			return err
		}
	}
	return nil
}

// goldenDriver returns a function performing golden step k (and returning the loss where the case has one).
func goldenDriver(c *goldenCase, ps []*Param, vgs []G.ValueGrad) (func(k int) (float64, error), error) {
	fixed := func(s G.Solver) func(k int) (float64, error) {
		return func(k int) (float64, error) {
			for i, p := range ps {
				setGrad(p, c.Steps[k].Grads[i])
			}
			return 0, s.Step(vgs)
		}
	}
	if cons, ok := goldenSpecial[c.Optimizer]; ok {
		return cons(c, ps, vgs, fixed)
	}
	if _, ok := constructors[c.Optimizer]; !ok {
		return nil, errNotBuilt
	}
	s, err := New(c.Optimizer, c.options("")...)
	if err != nil {
		return nil, err
	}
	return fixed(s), nil
}

// goldenSpecial holds drivers of cases that are not plain fixed-gradient steps of a registered solver.
var goldenSpecial = map[string]func(c *goldenCase, ps []*Param, vgs []G.ValueGrad, fixed func(G.Solver) func(int) (float64, error)) (func(int) (float64, error), error){}

// TestGolden runs every golden trajectory (computed by torch.optim or the authors' code) in GOLDEN_DIR
// (default testdata/golden) and prints "golden: N cases, P passed, F failed, S skipped".
func TestGolden(t *testing.T) {
	dir := goldenDir()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no golden cases in %s", dir)
	}
	sort.Strings(files)
	var passed, failed, skipped int
	for _, f := range files {
		c, err := loadGolden(f)
		if err != nil {
			failed++
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		err = runGolden(c)
		switch {
		case errors.Is(err, errNotBuilt):
			skipped++
			t.Logf("SKIP %s (%s: not built yet)", c.Case, c.Optimizer)
		case err != nil:
			failed++
			t.Errorf("FAIL %s: %v", c.Case, err)
		default:
			passed++
		}
	}
	fmt.Printf("golden: %d cases, %d passed, %d failed, %d skipped\n", len(files), passed, failed, skipped)
}

func init() {
	// base solver from the case's base_* keys.
	base := func(c *goldenCase) (Solver, error) {
		kind := c.hyperString("base_optimizer")
		if kind == "" {
			kind = "sgd"
		}
		return New(kind, c.options("base_")...)
	}
	goldenSpecial["lookahead"] = func(c *goldenCase, ps []*Param, vgs []G.ValueGrad, fixed func(G.Solver) func(int) (float64, error)) (func(int) (float64, error), error) {
		b, err := base(c)
		if err != nil {
			return nil, err
		}
		opts := c.options("", "pullback_momentum", "base_optimizer")
		if m := c.hyperString("pullback_momentum"); m != "" {
			opts = append(opts, WithPullback(m))
		}
		l, err := NewLookahead(b, opts...)
		if err != nil {
			return nil, err
		}
		return fixed(l), nil
	}
	goldenSpecial["sam"] = func(c *goldenCase, ps []*Param, vgs []G.ValueGrad, _ func(G.Solver) func(int) (float64, error)) (func(int) (float64, error), error) {
		b, err := base(c)
		if err != nil {
			return nil, err
		}
		s, err := NewSAM(b, c.options("", "base_optimizer")...)
		if err != nil {
			return nil, err
		}
		return func(int) (float64, error) {
			return s.StepClosure(vgs, func() (float64, error) { return c.problemGrad(ps), nil })
		}, nil
	}
}

func init() {
	goldenSpecial["lbfgs"] = func(c *goldenCase, ps []*Param, vgs []G.ValueGrad, _ func(G.Solver) func(int) (float64, error)) (func(int) (float64, error), error) {
		l, err := NewLBFGS(append(c.options("", "line_search"), WithLineSearch(c.hyperString("line_search")))...)
		if err != nil {
			return nil, err
		}
		return func(int) (float64, error) {
			return l.StepClosure(vgs, func() (float64, error) { return c.problemGrad(ps), nil })
		}, nil
	}
}

// TestGoldenChannelFirst runs the layout-dependent golden cases in PyTorch's layout with channel_first set:
// the flag must give the same trajectories as the default layout on reversed tensors.
func TestGoldenChannelFirst(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(goldenDir(), "*.json"))
	n := 0
	for _, f := range files {
		c, err := loadGolden(f)
		if err != nil || !torchLayout[c.Optimizer] {
			continue
		}
		if _, ok := constructors[c.Optimizer]; !ok {
			continue
		}
		n++
		if err := runGoldenLayout(c, true); err != nil {
			t.Errorf("%s with channel_first: %v", c.Case, err)
		}
	}
	if n == 0 {
		t.Skip("no layout-dependent golden cases")
	}
}
