package solvers

import (
	"math"
	"testing"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// foCase is one convergence case of the first-order optimizers of issue 4 (Adafactor, LAMB, LARS, DoG,
// SPS, cautious, OPT-AMSGrad).
type foCase struct {
	name        string
	build       func(opts ...Option) (Solver, error)
	opts        []Option
	quad, rosen float64 // peak lr of the cosine schedule; 0: no schedule (method's own step control)
	steps       int     // Rosenbrock budget; the quadratic gets 2000
	matrix      bool    // also run the quadratic as a 2×4 matrix (factored / layer-wise paths)
}

// foMinimize runs s on p with the parameter in the given shape; loss solvers get the loss.
func foMinimize(t *testing.T, s Solver, p problem, dtype string, steps int, shape []int) []float64 {
	t.Helper()
	x0 := make([]float64, p.dim)
	for i := range x0 {
		x0[i] = p.start(i)
	}
	var par *Param
	if dtype == "float32" {
		par = NewParamFrom("x", shape, toF32(x0))
	} else {
		par = NewParamFrom("x", shape, x0)
	}
	vgs := Params(par)
	g := make([]float64, p.dim)
	ls, isLoss := s.(LossSolver)
	for k := 0; k < steps; k++ {
		x := values(par)
		p.grad(x, g)
		setGrad(par, g)
		var err error
		if isLoss {
			err = ls.StepLoss(vgs, p.f(x))
		} else {
			err = s.Step(vgs)
		}
		if err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
	}
	return values(par)
}

func foConverge(t *testing.T, cases []foCase) {
	for _, c := range cases {
		for _, p := range []problem{quadratic(), rosenbrock()} {
			shapes := [][]int{{p.dim}}
			if c.matrix && p.name == "quadratic" {
				shapes = append(shapes, []int{2, 4})
			}
			for _, shape := range shapes {
				for _, dtype := range []string{"float32", "float64"} {
					t.Run(c.name+"/"+p.name+"/"+dtype, func(t *testing.T) {
						steps, lr := 2000, c.quad
						if p.name == "rosenbrock" {
							steps, lr = c.steps, c.rosen
						}
						opts := append([]Option{}, c.opts...)
						if lr > 0 {
							opts = append(opts, WithSchedule(schedule.Must(schedule.Cosine(lr, 0, steps))))
						}
						s, err := c.build(opts...)
						if err != nil {
							t.Fatal(err)
						}
						x := foMinimize(t, s, p, dtype, steps, shape)
						if !p.done(x) {
							t.Fatalf("shape %v: did not converge: x = %v, f = %g", shape, x, p.f(x))
						}
					})
				}
			}
		}
	}
}

// foStep steps s once on the model (with the loss for loss solvers).
func foStep(s Solver, m *testModel) error {
	if ls, ok := s.(LossSolver); ok {
		loss := 0.0
		for _, x := range m.snapshot() {
			for _, v := range x {
				loss += 0.25 * v * v
			}
		}
		return ls.StepLoss(Params(m.ps...), loss+1)
	}
	return s.Step(Params(m.ps...))
}

// foRoundTrip: N steps + save + load + M steps equals N+M steps bit for bit, in both dtypes.
func foRoundTrip(t *testing.T, cases map[string]func() (Solver, error)) {
	for name, build := range cases {
		for _, dtype := range []string{"float32", "float64"} {
			t.Run(name+"/"+dtype, func(t *testing.T) { roundTrip(t, build, dtype, 7, 5, nil, foStep) })
		}
	}
}

// foNoAllocs: after the first step, a step allocates nothing (matrices, vectors, both dtypes).
func foNoAllocs(t *testing.T, cases map[string]func() (Solver, error)) {
	for name, build := range cases {
		s, err := build()
		if err != nil {
			t.Fatal(err)
		}
		m32, m64 := newTestModel("float32", 3), newTestModel("float64", 4)
		for _, p := range m64.ps {
			p.name += "_64"
		}
		both := &testModel{ps: append(append([]*Param{}, m32.ps...), m64.ps...), rng: m32.rng}
		both.fillGrads()
		if err := foStep(s, both); err != nil {
			t.Fatal(err)
		}
		// fixed gradients, refilled by copying (no allocation) before each measured step
		both.fillGrads()
		var dst32, src32 [][]float32
		var dst64, src64 [][]float64
		for _, p := range both.ps {
			switch d := p.GradTensor().Data().(type) {
			case []float32:
				dst32, src32 = append(dst32, d), append(src32, append([]float32{}, d...))
			case []float64:
				dst64, src64 = append(dst64, d), append(src64, append([]float64{}, d...))
			}
		}
		refill := func() {
			for i := range dst32 {
				copy(dst32[i], src32[i])
			}
			for i := range dst64 {
				copy(dst64[i], src64[i])
			}
		}
		ls, isLoss := s.(LossSolver)
		params := Params(both.ps...)
		allocs := testing.AllocsPerRun(20, func() {
			refill()
			var err error
			if isLoss {
				err = ls.StepLoss(params, 3)
			} else {
				err = s.Step(params)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
		base := 0.0
		if allocs-base > 0 {
			t.Errorf("%s: %v allocations per step", name, allocs-base)
		}
	}
}

func foBad(t *testing.T, bad map[string]func() (Solver, error)) {
	for name, build := range bad {
		if s, err := build(); err == nil {
			t.Errorf("%s: accepted (%v)", name, s)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func asSolver[S Solver](s S, err error) (Solver, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

func TestAdafactorConvergence(t *testing.T) {
	manual := []Option{SetFlag("relative_step", false), SetFlag("scale_parameter", false)}
	foConverge(t, []foCase{
		{name: "adafactor", build: plain("adafactor"), opts: manual, quad: 0.05, rosen: 0.02, steps: 10000, matrix: true},
		{name: "adafactor-momentum-wd", build: plain("adafactor"), opts: append(manual, Set("beta1", 0.9), WithWeightDecay(1e-4)), quad: 0.05, rosen: 0.02, steps: 10000, matrix: true},
	})
}

// TestAdafactorRelativeStep: with its own step control (min(1e-2, 1/√t)·max(eps2, RMS(p))) Adafactor
// reaches the quadratic's minimum within 1e-2.
func TestAdafactorRelativeStep(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		for _, shape := range [][]int{{8}, {2, 4}} {
			s, err := NewAdafactor(Set("beta1", 0.9))
			if err != nil {
				t.Fatal(err)
			}
			p := quadratic()
			x := foMinimize(t, s, p, dtype, 3000, shape)
			if !p.done(x) {
				t.Errorf("%s %v: x = %v", dtype, shape, x)
			}
		}
	}
}

// TestAdafactorFactoredMatchesRankOne: for a rank-one g² (g_ij = a_i·b_j) with eps1 = 0, the factored
// estimate R·C/mean(R) equals the full second moment, so one step of a matrix equals the unfactored rule
// applied to the same gradient seen as a vector... up to rounding.
func TestAdafactorFactoredMatchesRankOne(t *testing.T) {
	a, b := []float64{1, 2, 3}, []float64{0.5, -1, 2, 4}
	g := make([]float64, 12)
	w := make([]float64, 12)
	for i := range a {
		for j := range b {
			g[i*4+j] = a[i] * b[j]
			w[i*4+j] = float64(i - j)
		}
	}
	opts := []Option{SetFlag("relative_step", false), SetFlag("scale_parameter", false), WithLR(0.1), Set("eps1", 0), Set("clip_threshold", 100)}
	s1, _ := NewAdafactor(opts...)
	s2, _ := NewAdafactor(opts...)
	pm := NewParamFrom("m", []int{3, 4}, append([]float64{}, w...))
	pv := NewParamFrom("m", []int{12}, append([]float64{}, w...))
	setGrad(pm, g)
	setGrad(pv, g)
	if err := s1.Step(Params(pm)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Step(Params(pv)); err != nil {
		t.Fatal(err)
	}
	x, y := values(pm), values(pv)
	for i := range x {
		if math.Abs(x[i]-y[i]) > 1e-12 {
			t.Fatalf("factored %v != full %v", x, y)
		}
	}
	if sb := s1.StateBytes(); sb != 0 {
		t.Logf("StateBytes counts buffers only: %d", sb)
	}
}

func TestAdafactorStateRoundTrip(t *testing.T) {
	foRoundTrip(t, map[string]func() (Solver, error){
		"adafactor": func() (Solver, error) { return asSolver(NewAdafactor()) },
		"adafactor-momentum": func() (Solver, error) {
			return asSolver(NewAdafactor(Set("beta1", 0.9), WithWeightDecay(0.01), SetFlag("warmup_init", true)))
		},
		"adafactor-manual": func() (Solver, error) {
			return asSolver(NewAdafactor(SetFlag("relative_step", false), WithLR(0.01)))
		},
	})
}

func TestAdafactorNoAllocs(t *testing.T) {
	foNoAllocs(t, map[string]func() (Solver, error){
		"adafactor": func() (Solver, error) { return asSolver(NewAdafactor(Set("beta1", 0.9), WithWeightDecay(0.01))) },
	})
}

func TestAdafactorBadHyperparameters(t *testing.T) {
	foBad(t, map[string]func() (Solver, error){
		"lr with relative_step":  func() (Solver, error) { return asSolver(NewAdafactor(WithLR(0.1))) },
		"no lr without relative": func() (Solver, error) { return asSolver(NewAdafactor(SetFlag("relative_step", false))) },
		"warmup without relative": func() (Solver, error) {
			return asSolver(NewAdafactor(SetFlag("relative_step", false), WithLR(1), SetFlag("warmup_init", true)))
		},
		"clip_threshold 0": func() (Solver, error) { return asSolver(NewAdafactor(Set("clip_threshold", 0))) },
		"decay_rate > 0":   func() (Solver, error) { return asSolver(NewAdafactor(Set("decay_rate", 0.5))) },
		"beta1 = 1":        func() (Solver, error) { return asSolver(NewAdafactor(Set("beta1", 1))) },
		"negative eps1":    func() (Solver, error) { return asSolver(NewAdafactor(Set("eps1", -1))) },
		"schedule with relative": func() (Solver, error) {
			return asSolver(NewAdafactor(WithSchedule(schedule.Must(schedule.Cosine(1, 0, 10)))))
		},
	})
}
