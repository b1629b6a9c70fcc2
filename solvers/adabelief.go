package solvers

import "math"

// NewAdaBelief returns AdaBelief (Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
// Observed Gradients") as the authors' adabelief-pytorch 0.2.1:
//
//	decay: weight_decouple: p ← p·(1 − lr·wd) (or p·(1 − wd) with fixed_decay); else g ← g + wd·p
//	m ← β1·m + (1−β1)·g;  s ← β2·s + (1−β2)·(g − m)² + eps   (eps enters the stored s at every step)
//	amsgrad: smax ← max(smax, s)
//	no rectify: p ← p − (lr/bc1)·m/(sqrt(s or smax)/sqrt(bc2) + eps)
//	rectify (RAdam's rule, ρ_t ≥ 5): p ← p − lr·k·m/(sqrt(s) + eps),
//	  k = sqrt(bc2·(ρ_t−4)/(ρ∞−4)·(ρ_t−2)/ρ_t·ρ∞/(ρ∞−2))/bc1; below ρ_t = 5: p ← p − (lr/bc1)·m if
//	  degenerated_to_sgd, else no moment update.
//
// Hyperparameters (defaults, the authors'): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-16),
// weight_decay (0), amsgrad (false), weight_decouple (true), fixed_decay (false), rectify (true),
// degenerated_to_sgd (true).
func NewAdaBelief(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adabelief", []hyperSpec{
		lrSpec(1e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-16), wdSpec(0),
		flagSpec("amsgrad", false), flagSpec("weight_decouple", true), flagSpec("fixed_decay", false),
		flagSpec("rectify", true), flagSpec("degenerated_to_sgd", true),
	}, opts)
}

type adaBeliefRule struct {
	beta1, beta2, eps                                  float64
	amsgrad, decouple, fixedDecay, rectify, degenerate bool
}

func init() {
	ruleFactories["adabelief"] = func(c *config) (rule, error) {
		return &adaBeliefRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps"), amsgrad: c.b("amsgrad"),
			decouple: c.b("weight_decouple"), fixedDecay: c.b("fixed_decay"), rectify: c.b("rectify"),
			degenerate: c.b("degenerated_to_sgd")}, nil
	}
	registerOptimizer("adabelief", NewAdaBelief)
}

func (r *adaBeliefRule) bufferNames() []string {
	if r.amsgrad {
		return []string{"exp_avg", "exp_avg_var", "max_exp_avg_var"}
	}
	return []string{"exp_avg", "exp_avg_var"}
}
func (r *adaBeliefRule) bufferInit(int) float64 { return 0 }

// Modes of the AdaBelief update, chosen per step in coefs.
const (
	abAdaptive  = 0 // sqrt(s)/sqrt(bc2) + eps denominator (no rectify)
	abRectified = 1 // rectified: sqrt(s) + eps
	abSGD       = 2 // degenerated to SGD with momentum
	abNone      = 3 // no moment update
)

func (r *adaBeliefRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	t := float64(st.step)
	bc1, bc2 := 1-math.Pow(r.beta1, t), 1-math.Pow(r.beta2, t)
	l2, shrink := 0.0, 1.0
	switch {
	case r.decouple && r.fixedDecay:
		shrink = 1 - wd
	case r.decouple:
		shrink = 1 - lr*wd
	default:
		l2 = wd
	}
	mode, step := float64(abAdaptive), lr/bc1
	if r.rectify {
		rhoInf := 2/(1-r.beta2) - 1
		rhoT := rhoInf - 2*t*math.Pow(r.beta2, t)/bc2
		switch {
		case rhoT >= 5:
			mode = abRectified
			step = lr * math.Sqrt(bc2*(rhoT-4)/(rhoInf-4)*(rhoT-2)/rhoT*rhoInf/(rhoInf-2)) / bc1
		case r.degenerate:
			mode = abSGD
		default:
			mode = abNone
		}
	}
	*c = coefs{step, 1 / math.Sqrt(bc2), r.beta1, 1 - r.beta1, r.beta2, 1 - r.beta2, r.eps, l2, shrink, mode}
}
func (r *adaBeliefRule) run32(a *kernelArgs[float32], lo, hi int) {
	adaBeliefKernel(a, lo, hi, r.amsgrad)
}
func (r *adaBeliefRule) run64(a *kernelArgs[float64], lo, hi int) {
	adaBeliefKernel(a, lo, hi, r.amsgrad)
}

func adaBeliefKernel[T Float](a *kernelArgs[T], lo, hi int, amsgrad bool) {
	step, ibc2s := T(a.c[0]), T(a.c[1])
	b1, omb1, b2, omb2, eps, l2, shrink := T(a.c[2]), T(a.c[3]), T(a.c[4]), T(a.c[5]), T(a.c[6]), T(a.c[7]), T(a.c[8])
	mode := int(a.c[9])
	p, g, m, s := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi], a.b[1][lo:hi]
	var smax []T
	if amsgrad {
		smax = a.b[2][lo:hi]
	}
	for i := range p {
		gi, pi := g[i], p[i]
		if l2 != 0 {
			gi += l2 * pi
		}
		pi *= shrink
		mi := m[i]*b1 + omb1*gi
		m[i] = mi
		res := gi - mi
		si := s[i]*b2 + omb2*res*res
		si += eps
		s[i] = si
		den := si
		if amsgrad {
			den = max(smax[i], si)
			smax[i] = den
		}
		switch mode {
		case abAdaptive:
			pi -= step * (mi / (sqrt(den)*ibc2s + eps))
		case abRectified:
			pi -= step * (mi / (sqrt(si) + eps))
		case abSGD:
			pi -= step * mi
		}
		p[i] = pi
		g[i] = 0
	}
}
