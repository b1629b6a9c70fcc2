package solvers

import "math"

// NewAdan returns Adan (Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
// Models") as the authors' code (sail-sg/Adan, adan.py). The betas follow the code's convention, which is
// 1 − the paper's: the defaults (0.98, 0.92, 0.99) are the paper's (0.02, 0.08, 0.01). With
// Δ = g − g_prev (0 at the first step):
//
//	optional global clipping: g ← g·min(1, max_grad_norm/(‖g‖ + eps)) over all parameters of the step
//	m ← β1·m + (1−β1)·g;  d ← β2·d + (1−β2)·Δ;  n ← β3·n + (1−β3)·(g + β2·Δ)²
//	u = (m/bc1 + β2·d/bc2)/(sqrt(n)/sqrt(bc3) + eps)
//	proximal decay (default): p ← (p − lr·u)/(1 + lr·wd);  no_prox: p ← p·(1 − lr·wd) − lr·u
//
// Hyperparameters (defaults): lr (1e-3), beta1 (0.98), beta2 (0.92), beta3 (0.99), eps (1e-8),
// weight_decay (0), no_prox (false), max_grad_norm (0: no clipping).
func NewAdan(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adan", []hyperSpec{
		lrSpec(1e-3), betaSpec("beta1", 0.98), betaSpec("beta2", 0.92), betaSpec("beta3", 0.99),
		epsSpec(1e-8), wdSpec(0), flagSpec("no_prox", false),
		{key: "max_grad_norm", def: 0, check: nonNegative},
	}, opts)
}

type adanRule struct {
	beta1, beta2, beta3, eps, maxNorm float64
	noProx                            bool
	clip                              float64 // this step's clipping factor, set by prepare
}

func init() {
	ruleFactories["adan"] = func(c *config) (rule, error) {
		return &adanRule{beta1: c.f("beta1"), beta2: c.f("beta2"), beta3: c.f("beta3"), eps: c.f("eps"),
			maxNorm: c.f("max_grad_norm"), noProx: c.b("no_prox"), clip: 1}, nil
	}
	registerOptimizer("adan", NewAdan)
}

func (r *adanRule) bufferNames() []string {
	return []string{"exp_avg", "exp_avg_diff", "exp_avg_sq", "pre_grad"}
}
func (r *adanRule) bufferInit(int) float64 { return 0 }

func (r *adanRule) prepare(views []view) {
	r.clip = 1
	if r.maxNorm > 0 {
		r.clip = min(1, r.maxNorm/(gradNorm(views)+r.eps))
	}
}

func (r *adanRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	t := float64(st.step)
	bc1, bc2, bc3 := 1-math.Pow(r.beta1, t), 1-math.Pow(r.beta2, t), 1-math.Pow(r.beta3, t)
	shrink, prox := 1.0, 1.0
	if r.noProx {
		shrink = 1 - lr*wd
	} else {
		prox = 1 + lr*wd
	}
	first := 0.0
	if st.step == 1 {
		first = 1
	}
	*c = coefs{lr, 1 / bc1, r.beta2 / bc2, 1 / math.Sqrt(bc3), r.beta1, r.beta2, r.beta3, r.eps, shrink, prox, r.clip, first}
}
func (r *adanRule) run32(a *kernelArgs[float32], lo, hi int) { adanKernel(a, lo, hi) }
func (r *adanRule) run64(a *kernelArgs[float64], lo, hi int) { adanKernel(a, lo, hi) }

func adanKernel[T Float](a *kernelArgs[T], lo, hi int) {
	lr, ibc1, b2bc2, ibc3s := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3])
	b1, b2, b3, eps, shrink, prox, clip := T(a.c[4]), T(a.c[5]), T(a.c[6]), T(a.c[7]), T(a.c[8]), T(a.c[9]), T(a.c[10])
	first := a.c[11] != 0
	p, g, m, d, n, prev := a.p[lo:hi], a.g[lo:hi], a.b[0][lo:hi], a.b[1][lo:hi], a.b[2][lo:hi], a.b[3][lo:hi]
	for i := range p {
		gi := g[i]
		if clip != 1 {
			gi *= clip
		}
		if first {
			prev[i] = gi
		}
		diff := gi - prev[i]
		upd := gi + b2*diff
		m[i] = m[i]*b1 + (1-b1)*gi
		d[i] = d[i]*b2 + (1-b2)*diff
		n[i] = n[i]*b3 + (1-b3)*upd*upd
		den := sqrt(n[i])*ibc3s + eps
		u := (m[i]*ibc1 + b2bc2*d[i]) / den
		pi := p[i] * shrink
		pi -= lr * u
		if prox != 1 {
			pi /= prox
		}
		p[i] = pi
		prev[i] = gi
		g[i] = 0
	}
}
