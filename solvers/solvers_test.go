package solvers

import (
	"math"
	"testing"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// problem is a test objective over one parameter vector.
type problem struct {
	name  string
	dim   int
	start func(i int) float64
	f     func(x []float64) float64
	grad  func(x, g []float64)
	done  func(x []float64) bool
}

var quadA = []float64{1, 2, 3, 5, 8, 1.5, 4, 6}

func quadratic() problem {
	return problem{
		name:  "quadratic",
		dim:   len(quadA),
		start: func(i int) float64 { return 2 - 0.5*float64(i) },
		f: func(x []float64) float64 {
			s := 0.0
			for i, v := range x {
				d := v - float64(i)/4
				s += 0.5 * quadA[i] * d * d
			}
			return s
		},
		grad: func(x, g []float64) {
			for i, v := range x {
				g[i] = quadA[i] * (v - float64(i)/4)
			}
		},
		done: func(x []float64) bool {
			for i, v := range x {
				if math.Abs(v-float64(i)/4) > 1e-2 {
					return false
				}
			}
			return true
		},
	}
}

func rosenbrock() problem {
	return problem{
		name:  "rosenbrock",
		dim:   2,
		start: func(i int) float64 { return []float64{-1.2, 1}[i] },
		f: func(x []float64) float64 {
			return (1-x[0])*(1-x[0]) + 100*(x[1]-x[0]*x[0])*(x[1]-x[0]*x[0])
		},
		grad: func(x, g []float64) {
			g[0] = -2*(1-x[0]) - 400*x[0]*(x[1]-x[0]*x[0])
			g[1] = 200 * (x[1] - x[0]*x[0])
		},
		done: func(x []float64) bool { return math.Abs(x[0]-1) < 2e-2 && math.Abs(x[1]-1) < 4e-2 },
	}
}

// convergenceCase is one solver with the settings it gets on each problem: a peak learning rate, annealed
// to 0 by a cosine schedule over the step budget.
type convergenceCase struct {
	name  string
	build func(opts ...Option) (Solver, error)
	opts  []Option
	quad  float64 // peak lr on the quadratic
	rosen float64 // peak lr on Rosenbrock
	steps int     // Rosenbrock budget (the quadratic gets 2000)
	fixed bool    // constant lr instead of the cosine schedule (methods with their own step control)
}

func plain(kind string) func(opts ...Option) (Solver, error) {
	return func(opts ...Option) (Solver, error) { return New(kind, opts...) }
}

func convergenceCases() []convergenceCase {
	return []convergenceCase{
		{name: "sgd", build: plain("sgd"), opts: []Option{WithMomentum(0.9)}, quad: 0.02, rosen: 1e-3, steps: 20000},
		{name: "sgd-nesterov", build: plain("sgd"), opts: []Option{WithMomentum(0.9), WithNesterov(true)}, quad: 0.02, rosen: 1e-3, steps: 20000},
		{name: "adam", build: plain("adam"), quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "adam-amsgrad", build: plain("adam"), opts: []Option{WithAMSGrad(true)}, quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "adamw", build: plain("adamw"), opts: []Option{WithWeightDecay(0)}, quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "adamax", build: plain("adamax"), quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "nadam", build: plain("nadam"), quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "radam", build: plain("radam"), quad: 0.05, rosen: 2e-3, steps: 20000},
		{name: "adagrad", build: plain("adagrad"), quad: 0.5, rosen: 0.5, steps: 20000},
		{name: "adadelta", build: plain("adadelta"), opts: []Option{Set("rho", 0.95)}, quad: 50, rosen: 2, steps: 20000},
		{name: "rmsprop", build: plain("rmsprop"), quad: 0.01, rosen: 2e-3, steps: 20000},
		{name: "rmsprop-centered-momentum", build: plain("rmsprop"), opts: []Option{WithMomentum(0.5), SetFlag("centered", true)}, quad: 0.01, rosen: 1e-3, steps: 20000},
		{name: "diffgrad", build: plain("diffgrad"), quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "diffgrad_paper", build: plain("diffgrad_paper"), quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "adabelief", build: plain("adabelief"), quad: 0.05, rosen: 2e-3, steps: 20000},
		{name: "adabelief-amsgrad-l2", build: plain("adabelief"), opts: []Option{WithAMSGrad(true), SetFlag("weight_decouple", false), SetFlag("rectify", false)}, quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "lion", build: plain("lion"), quad: 0.01, rosen: 1e-3, steps: 20000},
		{name: "signsgd", build: plain("signsgd"), quad: 0.01, rosen: 1e-3, steps: 20000},
		{name: "signum", build: plain("signum"), quad: 0.01, rosen: 1e-3, steps: 20000},
		{name: "grams", build: plain("grams"), quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "adan", build: plain("adan"), quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "adan-clip-noprox", build: plain("adan"), opts: []Option{Set("max_grad_norm", 1), SetFlag("no_prox", true)}, quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "adamp", build: plain("adamp"), opts: []Option{WithNesterov(true)}, quad: 0.05, rosen: 0.02, steps: 10000},
		{name: "sgdp", build: plain("sgdp"), opts: []Option{WithMomentum(0.9)}, quad: 0.02, rosen: 1e-3, steps: 20000},
		{name: "lookahead-adam", build: func(opts ...Option) (Solver, error) {
			a, err := NewAdam(opts...)
			if err != nil {
				return nil, err
			}
			return NewLookahead(a, Set("k", 5), Set("alpha", 0.5))
		}, quad: 0.05, rosen: 0.02, steps: 20000},
		{name: "clipnorm-sgd", build: func(opts ...Option) (Solver, error) {
			s, err := NewSGD(append(opts, WithMomentum(0.9))...)
			if err != nil {
				return nil, err
			}
			return NewClipNorm(s, 10)
		}, quad: 0.02, rosen: 1e-3, steps: 20000},
		{name: "lbfgs-strong-wolfe", build: plain("lbfgs"), opts: []Option{WithLineSearch("strong_wolfe")}, quad: 1, rosen: 1, steps: 50, fixed: true},
		{name: "lbfgs-fixed-step", build: plain("lbfgs"), quad: 0.1, rosen: 0.02, steps: 3000, fixed: true},
		{name: "sam-sgd", build: func(opts ...Option) (Solver, error) {
			s, err := NewSGD(append(opts, WithMomentum(0.9))...)
			if err != nil {
				return nil, err
			}
			return NewSAM(s, WithRho(1e-3))
		}, quad: 0.02, rosen: 1e-3, steps: 20000},
	}
}

// minimize runs s on p in the given dtype and returns the final iterate.
func minimize(t *testing.T, s Solver, p problem, dtype string, steps int) []float64 {
	t.Helper()
	x0 := make([]float64, p.dim)
	for i := range x0 {
		x0[i] = p.start(i)
	}
	var par *Param
	if dtype == "float32" {
		par = NewParamFrom("x", []int{p.dim}, toF32(x0))
	} else {
		par = NewParamFrom("x", []int{p.dim}, x0)
	}
	vgs := Params(par)
	g := make([]float64, p.dim)
	eval := func() (float64, error) {
		x := values(par)
		p.grad(x, g)
		setGrad(par, g)
		return p.f(x), nil
	}
	cs, isClosure := s.(ClosureSolver)
	for k := 0; k < steps; k++ {
		var err error
		if isClosure {
			_, err = cs.StepClosure(vgs, eval)
		} else {
			_, _ = eval()
			err = s.Step(vgs)
		}
		if err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
	}
	return values(par)
}

func TestConvergence(t *testing.T) {
	for _, c := range convergenceCases() {
		for _, p := range []problem{quadratic(), rosenbrock()} {
			for _, dtype := range []string{"float32", "float64"} {
				t.Run(c.name+"/"+p.name+"/"+dtype, func(t *testing.T) {
					steps, lr := 2000, c.quad
					if p.name == "rosenbrock" {
						steps, lr = c.steps, c.rosen
					}
					if p.name == "quadratic" && c.fixed {
						steps = 100
					}
					lrOpt := WithSchedule(schedule.Must(schedule.Cosine(lr, 0, steps)))
					if c.fixed {
						lrOpt = WithLR(lr)
					}
					s, err := c.build(append(append([]Option{}, c.opts...), lrOpt)...)
					if err != nil {
						t.Fatal(err)
					}
					x := minimize(t, s, p, dtype, steps)
					if !p.done(x) {
						t.Fatalf("did not converge: x = %v, f = %g", x, p.f(x))
					}
				})
			}
		}
	}
}
