package solvers

import "math"

// NewLion returns Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms") as
// lucidrains/lion-pytorch:
//
//	p ← p·(1 − lr·wd');  p ← p − lr·sign(β1·m + (1−β1)·g);  then m ← β2·m + (1−β2)·g
//
// with sign(0) = 0 and wd' = wd, or wd/lr₀ when decoupled_weight_decay is set (lr₀ the learning rate at
// construction, the first value of a schedule), so the decay per step is wd·lr/lr₀ and does not shrink with
// a small lr. Hyperparameters (defaults): lr (1e-4; Lion wants 3–10x less than AdamW), beta1 (0.9),
// beta2 (0.99), weight_decay (0), decoupled_weight_decay (false).
func NewLion(opts ...Option) (*Optimizer, error) {
	o, err := newOptimizer("lion", []hyperSpec{
		lrSpec(1e-4), betaSpec("beta1", 0.9), betaSpec("beta2", 0.99), wdSpec(0),
		flagSpec("decoupled_weight_decay", false),
	}, opts)
	if err != nil {
		return nil, err
	}
	o.rule.(*lionRule).lr0 = o.LR()
	return o, nil
}

type lionRule struct {
	beta1, beta2 float64
	decoupled    bool
	lr0          float64
}

func init() {
	ruleFactories["lion"] = func(c *config) (rule, error) {
		r := &lionRule{beta1: c.f("beta1"), beta2: c.f("beta2"), decoupled: c.b("decoupled_weight_decay"), lr0: c.f("lr")}
		if c.sched != nil {
			r.lr0 = c.sched.At(0)
		}
		return r, nil
	}
	registerOptimizer("lion", NewLion)
}

func (r *lionRule) bufferNames() []string  { return []string{"exp_avg"} }
func (r *lionRule) bufferInit(int) float64 { return 0 }
func (r *lionRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	if r.decoupled && wd != 0 {
		wd /= r.lr0
	}
	*c = coefs{lr, 1 - lr*wd, r.beta1, 1 - r.beta1, r.beta2, 1 - r.beta2}
}
func (r *lionRule) run32(a *kernelArgs[float32], lo, hi int) { lionKernel(a, lo, hi) }
func (r *lionRule) run64(a *kernelArgs[float64], lo, hi int) { lionKernel(a, lo, hi) }

func lionKernel[T Float](a *kernelArgs[T], lo, hi int) {
	lr, shrink, b1, omb1, b2, omb2 := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3]), T(a.c[4]), T(a.c[5])
	p, g, m := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi]
	for i := range p {
		gi := g[i]
		u := sign(m[i]*b1 + omb1*gi)
		p[i] = p[i]*shrink - lr*u
		m[i] = m[i]*b2 + omb2*gi
		g[i] = 0
	}
}

// sign returns −1, 0 or 1 (sign(0) = 0, as torch.sign).
func sign[T Float](x T) T {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// NewSignSGD returns signSGD (Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex
// Problems"): g ← g + wd·p; p ← p − lr·sign(g). With momentum > 0 it is Signum: m ← μ·m + (1−μ)·g;
// p ← p − lr·sign(m). Hyperparameters (defaults): lr (1e-3), momentum (0), weight_decay (0, coupled).
func NewSignSGD(opts ...Option) (*Optimizer, error) {
	return newOptimizer("signsgd", signSpecs(0), opts)
}

// NewSignum returns Signum (signSGD with momentum, Bernstein et al.), NewSignSGD with momentum 0.9 by default.
func NewSignum(opts ...Option) (*Optimizer, error) {
	return newOptimizer("signum", signSpecs(0.9), opts)
}

func signSpecs(mu float64) []hyperSpec {
	return []hyperSpec{lrSpec(1e-3), betaSpec("momentum", mu), wdSpec(0)}
}

type signRule struct{ mu float64 }

func init() {
	for _, kind := range []string{"signsgd", "signum"} {
		ruleFactories[kind] = func(c *config) (rule, error) { return &signRule{mu: c.f("momentum")}, nil }
	}
	registerOptimizer("signsgd", NewSignSGD)
	registerOptimizer("signum", NewSignum)
}

func (r *signRule) bufferNames() []string {
	if r.mu > 0 {
		return []string{"momentum_buffer"}
	}
	return nil
}
func (r *signRule) bufferInit(int) float64 { return 0 }
func (r *signRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	*c = coefs{lr, wd, r.mu, 1 - r.mu}
}
func (r *signRule) run32(a *kernelArgs[float32], lo, hi int) { signKernel(a, lo, hi, r.mu > 0) }
func (r *signRule) run64(a *kernelArgs[float64], lo, hi int) { signKernel(a, lo, hi, r.mu > 0) }

func signKernel[T Float](a *kernelArgs[T], lo, hi int, momentum bool) {
	lr, wd, mu, omu := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3])
	p, g := a.p[lo:hi], a.g[lo:hi]
	var m []T
	if momentum {
		m = a.b[0][lo:hi]
	}
	for i := range p {
		gi := g[i]
		if wd != 0 {
			gi += wd * p[i]
		}
		if momentum {
			m[i] = m[i]*mu + omu*gi
			gi = m[i]
		}
		p[i] -= lr * sign(gi)
		g[i] = 0
	}
}

// NewGrams returns Grams, gradient descent with adaptive momentum scaling (Cao et al., "Grams: Gradient
// Descent with Adaptive Momentum Scaling"), as the authors' code (Gunale0926/Grams):
//
//	p ← p − lr·wd·p;  m, v as Adam;  p ← p − step·sign(g)·|m|/(sqrt(v) + eps)
//
// with step = lr·sqrt(bc2)/bc1 (correct_bias) or lr, and sign(0) = 0: the update takes its direction from
// the current gradient and its size from the momentum. Hyperparameters (defaults, the authors'): lr (1e-3),
// beta1 (0.9), beta2 (0.999), eps (1e-6), weight_decay (0, decoupled), correct_bias (true).
func NewGrams(opts ...Option) (*Optimizer, error) {
	return newOptimizer("grams", []hyperSpec{
		lrSpec(1e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-6), wdSpec(0),
		flagSpec("correct_bias", true),
	}, opts)
}

type gramsRule struct {
	beta1, beta2, eps float64
	correct           bool
}

func init() {
	ruleFactories["grams"] = func(c *config) (rule, error) {
		return &gramsRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps"), correct: c.b("correct_bias")}, nil
	}
	registerOptimizer("grams", NewGrams)
}

func (r *gramsRule) bufferNames() []string  { return []string{"exp_avg", "exp_avg_sq"} }
func (r *gramsRule) bufferInit(int) float64 { return 0 }
func (r *gramsRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	t := float64(st.step)
	step := lr
	if r.correct {
		step = lr * math.Sqrt(1-math.Pow(r.beta2, t)) / (1 - math.Pow(r.beta1, t))
	}
	*c = coefs{step, lr * wd, r.beta1, 1 - r.beta1, r.beta2, 1 - r.beta2, r.eps}
}
func (r *gramsRule) run32(a *kernelArgs[float32], lo, hi int) { gramsKernel(a, lo, hi) }
func (r *gramsRule) run64(a *kernelArgs[float64], lo, hi int) { gramsKernel(a, lo, hi) }

func gramsKernel[T Float](a *kernelArgs[T], lo, hi int) {
	step, lrwd, b1, omb1, b2, omb2, eps := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3]), T(a.c[4]), T(a.c[5]), T(a.c[6])
	p, g, m, v := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi], a.b[1][lo:hi]
	for i := range p {
		gi := g[i]
		pi := p[i]
		if lrwd != 0 {
			pi -= lrwd * pi
		}
		m[i] = m[i]*b1 + omb1*gi
		v[i] = v[i]*b2 + omb2*gi*gi
		p[i] = pi - step*(sign(gi)*abs(m[i])/(sqrt(v[i])+eps))
		g[i] = 0
	}
}
