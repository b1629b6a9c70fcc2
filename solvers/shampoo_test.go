package solvers

import (
	"bytes"
	"math"
	"math/rand"
	"testing"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// mxLeastSquares is min ½‖X·W − Y‖²_F with X 32×8 and Y = X·W* (W* 8×6): the optimum is W*, loss 0.
type mxLeastSquares struct {
	x, y  []float64 // 32×8, 32×6
	n, d  int       // samples, inputs
	o     int       // outputs
	wstar []float64
}

func newMxLeastSquares(seed int64) *mxLeastSquares {
	rng := rand.New(rand.NewSource(seed))
	p := &mxLeastSquares{n: 32, d: 8, o: 6}
	p.x = make([]float64, p.n*p.d)
	for i := range p.x {
		p.x[i] = rng.NormFloat64() / math.Sqrt(float64(p.n))
	}
	p.wstar = make([]float64, p.d*p.o)
	for i := range p.wstar {
		p.wstar[i] = rng.NormFloat64()
	}
	p.y = make([]float64, p.n*p.o)
	p.residual(p.wstar, p.y) // y = X·W*
	return p
}

// residual writes X·w into out (n×o).
func (p *mxLeastSquares) residual(w, out []float64) {
	for i := 0; i < p.n; i++ {
		for j := 0; j < p.o; j++ {
			s := 0.0
			for k := 0; k < p.d; k++ {
				s += p.x[i*p.d+k] * w[k*p.o+j]
			}
			out[i*p.o+j] = s
		}
	}
}

// lossGrad returns ½‖XW − Y‖² and writes Xᵀ(XW − Y) into g.
func (p *mxLeastSquares) lossGrad(w, g []float64) float64 {
	r := make([]float64, p.n*p.o)
	p.residual(w, r)
	loss := 0.0
	for i := range r {
		r[i] -= p.y[i]
		loss += 0.5 * r[i] * r[i]
	}
	for k := 0; k < p.d; k++ {
		for j := 0; j < p.o; j++ {
			s := 0.0
			for i := 0; i < p.n; i++ {
				s += p.x[i*p.d+k] * r[i*p.o+j]
			}
			g[k*p.o+j] = s
		}
	}
	return loss
}

// mxSolveLeastSquares runs s for steps on the least-squares problem from W = 0 and returns the initial
// and final losses.
func mxSolveLeastSquares(t *testing.T, s Solver, dtype string, steps int) (float64, float64) {
	t.Helper()
	p := newMxLeastSquares(7)
	w0 := make([]float64, p.d*p.o)
	var par *Param
	if dtype == "float32" {
		par = NewParamFrom("w", []int{p.d, p.o}, toF32(w0))
	} else {
		par = NewParamFrom("w", []int{p.d, p.o}, w0)
	}
	g := make([]float64, len(w0))
	first := p.lossGrad(w0, g)
	for k := 0; k < steps; k++ {
		p.lossGrad(values(par), g)
		setGrad(par, g)
		if err := s.Step(Params(par)); err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
	}
	return first, p.lossGrad(values(par), g)
}

// mxCase is one matrix-aware solver configuration for the shared tests.
type mxCase struct {
	name  string
	build func(opts ...Option) (Solver, error)
	opts  []Option
	lsLR  float64 // peak lr on least squares (cosine to 0)
	lsN   int
	quad  float64 // peak lr on the quadratic
}

func mxRunConvergence(t *testing.T, cases []mxCase) {
	for _, c := range cases {
		for _, dtype := range []string{"float32", "float64"} {
			t.Run(c.name+"/leastsquares/"+dtype, func(t *testing.T) {
				s, err := c.build(append(append([]Option{}, c.opts...), WithSchedule(schedule.Must(schedule.Cosine(c.lsLR, 0, c.lsN))))...)
				if err != nil {
					t.Fatal(err)
				}
				l0, l1 := mxSolveLeastSquares(t, s, dtype, c.lsN)
				t.Logf("loss %.3g -> %.3g", l0, l1)
				if !(l1 < 1e-4*l0) {
					t.Fatalf("did not converge: loss %g -> %g", l0, l1)
				}
			})
			t.Run(c.name+"/quadratic/"+dtype, func(t *testing.T) {
				const steps = 2000
				s, err := c.build(append(append([]Option{}, c.opts...), WithSchedule(schedule.Must(schedule.Cosine(c.quad, 0, steps))))...)
				if err != nil {
					t.Fatal(err)
				}
				p := quadratic()
				x := minimize(t, s, p, dtype, steps)
				if !p.done(x) {
					t.Fatalf("did not converge: x = %v, f = %g", x, p.f(x))
				}
			})
		}
	}
}

// mxRunRoundTrip: N steps, save, load into a fresh solver, M steps equals N+M steps bit for bit (the
// test model has a matrix, a vector and a 3-D tensor), and the re-saved state equals the straight one.
func mxRunRoundTrip(t *testing.T, name string, build func() (Solver, error)) {
	for _, dtype := range []string{"float32", "float64"} {
		t.Run(name+"/"+dtype, func(t *testing.T) {
			r := roundTrip(t, build, dtype, 4, 5, nil, nil)
			s2, s3 := r.saved, r.resumed
			// A state file of another kind or a truncated one is refused and changes nothing.
			before := stateBytesOf(t, s3)
			blob := stateBytesOf(t, s2)
			if err := LoadState(bytes.NewReader(blob[:len(blob)-9]), s3); err == nil {
				t.Fatal("truncated state accepted")
			}
			a, _ := NewAdamW()
			if err := LoadState(bytes.NewReader(stateBytesOf(t, a)), s3); err == nil {
				t.Fatal("adamw state accepted")
			}
			if !bytes.Equal(before, stateBytesOf(t, s3)) {
				t.Fatal("a refused load changed the state")
			}
		})
	}
}

// mxRunNoAllocs checks that steps without a refresh allocate nothing (matrices, vectors and 3-D
// tensors, float32 and float64), given a solver whose refresh period is far away.
func mxRunNoAllocs(t *testing.T, name string, build func() (Solver, error)) {
	t.Helper()
	s, err := build()
	if err != nil {
		t.Fatal(err)
	}
	var ps []*Param
	for _, dtype := range []string{"float32", "float64"} {
		m := newTestModel(dtype, 5)
		for _, p := range m.ps {
			p.name = dtype + "." + p.name
		}
		ps = append(ps, m.ps...)
		big := make([]float64, 80*130)
		for i := range big {
			big[i] = math.Sin(float64(i))
		}
		if dtype == "float32" {
			ps = append(ps, NewParamFrom(dtype+".big", []int{80, 130}, toF32(big)))
		} else {
			ps = append(ps, NewParamFrom(dtype+".big", []int{130, 80}, big))
		}
	}
	params := Params(ps...)
	var g32 [][]float32
	var g64 [][]float64
	for _, p := range ps {
		switch d := p.GradTensor().Data().(type) {
		case []float32:
			g32 = append(g32, d)
		case []float64:
			g64 = append(g64, d)
		}
	}
	fill := func() {
		for _, d := range g32 {
			for i := range d {
				d[i] = float32(0.01 * float64(i%7-3))
			}
		}
		for _, d := range g64 {
			for i := range d {
				d[i] = 0.01 * float64(i%5-2)
			}
		}
	}
	fill()
	if err := s.Step(params); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(10, func() {
		fill()
		if err := s.Step(params); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%s: %v allocations per step", name, allocs)
	}
}

func TestShampooConvergence(t *testing.T) {
	mxRunConvergence(t, []mxCase{
		{name: "shampoo-sgdgraft", build: func(o ...Option) (Solver, error) { return NewShampoo(o...) }, lsLR: 0.5, lsN: 300, quad: 0.1},
		{name: "shampoo-nograft-ema", build: func(o ...Option) (Solver, error) { return NewShampoo(o...) },
			opts: []Option{Set("graft_type", ShampooGraftNone), Set("beta2", 0.99), Set("update_freq", 5), Set("eps", 1e-6)}, lsLR: 0.005, lsN: 600, quad: 0.05},
		{name: "shampoo-adagradgraft", build: func(o ...Option) (Solver, error) { return NewShampoo(o...) },
			opts: []Option{Set("graft_type", ShampooGraftAdaGrad), WithNesterov(false)}, lsLR: 0.1, lsN: 600, quad: 0.5},
		{name: "shampoo-adamgraft", build: func(o ...Option) (Solver, error) { return NewShampoo(o...) },
			opts: []Option{Set("graft_type", ShampooGraftAdam), Set("update_freq", 10)}, lsLR: 0.01, lsN: 1000, quad: 0.01},
	})
}

// TestShampooPreconditioner: with β2 = 1, no grafting and no momentum, one step is exactly
// −η·L^{−1/4}·G·R^{−1/4} with L = εI + GGᵀ, R = εI + GᵀG, i.e. (for ε → 0) −η·U·Vᵀ·(scaled): for
// G = U·Σ·Vᵀ the Shampoo step of the first iteration is U·Σ^0·Vᵀ = U·Vᵀ (the paper's observation).
func TestShampooPreconditioner(t *testing.T) {
	g := []float64{3, 0, 0, 0, 2, 0} // 2×3, singular values 3 and 2
	p := NewParamFrom("w", []int{2, 3}, make([]float64, 6))
	setGrad(p, g)
	s, err := NewShampoo(WithLR(1), WithMomentum(0), WithNesterov(false), Set("graft_type", ShampooGraftNone), Set("eps", 1e-30))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Step(Params(p)); err != nil {
		t.Fatal(err)
	}
	want := []float64{-1, 0, 0, 0, -1, 0}
	for i, x := range values(p) {
		if math.Abs(x-want[i]) > 1e-9 {
			t.Fatalf("step = %v, want %v", values(p), want)
		}
	}
}

func TestShampooRoundTrip(t *testing.T) {
	mxRunRoundTrip(t, "shampoo", func() (Solver, error) {
		return NewShampoo(WithLR(0.1), Set("graft_type", ShampooGraftAdam), Set("beta2", 0.9), Set("update_freq", 3), WithWeightDecay(0.01))
	})
	mxRunRoundTrip(t, "shampoo-adagrad", func() (Solver, error) {
		return NewShampoo(WithLR(0.1), Set("graft_type", ShampooGraftAdaGrad), Set("update_freq", 2))
	})
}

func TestShampooNoAllocs(t *testing.T) {
	mxRunNoAllocs(t, "shampoo", func() (Solver, error) {
		return NewShampoo(Set("update_freq", 1000), Set("graft_type", ShampooGraftAdam))
	})
}

func TestShampooStateBytes(t *testing.T) {
	for _, graft := range []float64{ShampooGraftSGD, ShampooGraftAdaGrad} {
		s, _ := NewShampoo(Set("graft_type", graft))
		w := NewParamFrom("w", []int{4, 3}, make([]float32, 12))
		b := NewParamFrom("b", []int{5}, make([]float64, 5))
		if err := s.Step(Params(w, b)); err != nil {
			t.Fatal(err)
		}
		extra := int64(0)
		if graft == ShampooGraftAdaGrad {
			extra = 1
		}
		want := 4*(12+2*(16+9)+extra*12) + 8*(5+5+extra*5)
		if got := s.StateBytes(); got != int64(want) {
			t.Fatalf("graft %v: StateBytes = %d, want %d", graft, got, want)
		}
	}
}

func TestMatrixSolversBadHyperparameters(t *testing.T) {
	bad := map[string]func() (Solver, error){
		"shampoo beta2 0":         func() (Solver, error) { return NewShampoo(Set("beta2", 0)) },
		"shampoo beta2 1.5":       func() (Solver, error) { return NewShampoo(Set("beta2", 1.5)) },
		"shampoo update_freq 0":   func() (Solver, error) { return NewShampoo(Set("update_freq", 0)) },
		"shampoo update_freq 2.5": func() (Solver, error) { return NewShampoo(Set("update_freq", 2.5)) },
		"shampoo graft 7":         func() (Solver, error) { return NewShampoo(Set("graft_type", 7)) },
		"shampoo momentum 1":      func() (Solver, error) { return NewShampoo(WithMomentum(1)) },
		"shampoo negative eps":    func() (Solver, error) { return NewShampoo(WithEps(-1)) },
		"shampoo unknown key":     func() (Solver, error) { return NewShampoo(Set("rank", 4)) },
		"galore rank 0":           func() (Solver, error) { return NewGaLore(Set("rank", 0)) },
		"galore gap 0":            func() (Solver, error) { return NewGaLore(Set("update_proj_gap", 0)) },
		"galore negative scale":   func() (Solver, error) { return NewGaLore(Set("scale", -1)) },
		"galore beta1 1":          func() (Solver, error) { return NewGaLore(WithBetas(1, 0.999)) },
		"galore negative lr":      func() (Solver, error) { return NewGaLore(WithLR(-1)) },
		"fira rank 1.5":           func() (Solver, error) { return NewFira(Set("rank", 1.5)) },
		"fira NaN scale":          func() (Solver, error) { return NewFira(Set("scale", math.NaN())) },
		"frugal density 1.5":      func() (Solver, error) { return NewFRUGAL(Set("density", 1.5)) },
		"frugal density -0.1":     func() (Solver, error) { return NewFRUGAL(Set("density", -0.1)) },
		"frugal gap 0":            func() (Solver, error) { return NewFRUGAL(Set("update_gap", 0)) },
		"frugal negative free lr": func() (Solver, error) { return NewFRUGAL(Set("inactive_lr_scale", -1)) },
		"frugal flag 0.5":         func() (Solver, error) { return NewFRUGAL(Set("reset_statistics", 0.5)) },
	}
	for name, build := range bad {
		if s, err := build(); err == nil {
			t.Errorf("%s: accepted (%v)", name, s)
		}
	}
}

// TestMatrixSolversRefusedSteps: a non-finite gradient or a shape change refuses the step and changes
// nothing (weights, gradients, state).
func TestMatrixSolversRefusedSteps(t *testing.T) {
	builds := map[string]func() (Solver, error){
		"shampoo": func() (Solver, error) { return NewShampoo(Set("graft_type", ShampooGraftAdam)) },
		"galore":  func() (Solver, error) { return NewGaLore(Set("rank", 2)) },
		"fira":    func() (Solver, error) { return NewFira(Set("rank", 2)) },
		"frugal":  func() (Solver, error) { return NewFRUGAL(Set("density", 0.5)) },
	}
	for name, build := range builds {
		m := newTestModel("float64", 3)
		s, _ := build()
		m.fillGrads()
		if err := s.Step(Params(m.ps...)); err != nil {
			t.Fatal(err)
		}
		m.fillGrads()
		m.ps[1].GradTensor().Data().([]float64)[0] = math.NaN()
		w, st := m.snapshot(), stateBytesOf(t, s)
		if err := s.Step(Params(m.ps...)); err == nil {
			t.Fatalf("%s: NaN gradient accepted", name)
		}
		other := NewParamFrom("w1", []int{3, 4}, make([]float64, 12))
		if err := s.Step(Params(other)); err == nil {
			t.Fatalf("%s: shape change accepted", name)
		}
		if !sameBits(w, m.snapshot()) || !bytes.Equal(st, stateBytesOf(t, s)) {
			t.Fatalf("%s: refused step changed weights or state", name)
		}
		if !math.IsNaN(m.ps[1].GradTensor().Data().([]float64)[0]) {
			t.Fatalf("%s: refused step changed the gradient", name)
		}
	}
}
