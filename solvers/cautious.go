package solvers

import "math"

// Cautious optimizers (Liang et al., "Cautious Optimizers: Improving Training with One Line of Code";
// reference kyleliang919/C-Optim, c_adamw.py and c_lion.py): the update u is masked where it disagrees in
// sign with the current gradient, φ = 1[u ⊙ g > 0], and rescaled so the mean step size is kept:
//
//	u ← u ⊙ φ · numel/(nnz(φ) + 1)            (the paper's and the original code's normalisation)
//	mean_mask: u ← u ⊙ φ / max(mean(φ), 1e-3)  (the form C-Optim switched to later, after timm)
//
// The mask is per tensor, so these are tensorwise rules (two passes: count, then apply).
func cautiousScale(nnz, n int, meanMask bool) float64 {
	if meanMask {
		return 1 / max(float64(nnz)/float64(n), 1e-3)
	}
	return float64(n) / (float64(nnz) + 1)
}

// NewCautiousAdamW returns cautious AdamW (kind "cadamw") as C-Optim's c_adamw.py (the HF-transformers
// AdamW form):
//
//	p ← p − lr·wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//	φ = 1[m ⊙ g > 0];  p ← p − step·(m ⊙ φ·s)/(√v + eps),  s the cautious normalisation above
//
// with step = lr·√bc2/bc1 (correct_bias) or lr. Hyperparameters (defaults, C-Optim's): lr (1e-3),
// beta1 (0.9), beta2 (0.999), eps (1e-6), weight_decay (0, decoupled), correct_bias (true),
// mean_mask (false).
func NewCautiousAdamW(opts ...Option) (*Optimizer, error) {
	return newOptimizer("cadamw", []hyperSpec{
		lrSpec(1e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), epsSpec(1e-6), wdSpec(0),
		flagSpec("correct_bias", true), flagSpec("mean_mask", false),
	}, opts)
}

// NewCautiousLion returns cautious Lion (kind "clion") as C-Optim's c_lion.py:
//
//	u = sign(β1·m + (1−β1)·g);  φ = 1[u ⊙ g > 0];  p ← p·(1 − lr·wd);  p ← p − lr·u ⊙ φ·s
//	m ← β2·m + (1−β2)·g
//
// Hyperparameters (defaults, Lion's): lr (1e-4), beta1 (0.9), beta2 (0.99), weight_decay (0),
// mean_mask (false).
func NewCautiousLion(opts ...Option) (*Optimizer, error) {
	return newOptimizer("clion", []hyperSpec{
		lrSpec(1e-4), betaSpec("beta1", 0.9), betaSpec("beta2", 0.99), wdSpec(0), flagSpec("mean_mask", false),
	}, opts)
}

type cautiousRule struct {
	lion              bool
	beta1, beta2, eps float64
	correct, meanMask bool
}

func init() {
	ruleFactories["cadamw"] = func(c *config) (rule, error) {
		return &cautiousRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps"), correct: c.b("correct_bias"), meanMask: c.b("mean_mask")}, nil
	}
	ruleFactories["clion"] = func(c *config) (rule, error) {
		return &cautiousRule{lion: true, beta1: c.f("beta1"), beta2: c.f("beta2"), meanMask: c.b("mean_mask")}, nil
	}
	registerOptimizer("cadamw", NewCautiousAdamW)
	registerOptimizer("clion", NewCautiousLion)
}

func (r *cautiousRule) bufferNames() []string {
	if r.lion {
		return []string{"exp_avg"}
	}
	return []string{"exp_avg", "exp_avg_sq"}
}
func (r *cautiousRule) bufferInit(int) float64 { return 0 }

func (r *cautiousRule) update32(v *view, st *paramState, lr, wd float64) {
	if r.lion {
		cautiousLion(r, v.w32, v.g32, st.b32[0], lr, wd)
		return
	}
	cautiousAdamW(r, v.w32, v.g32, st.b32[0], st.b32[1], st.step, lr, wd)
}
func (r *cautiousRule) update64(v *view, st *paramState, lr, wd float64) {
	if r.lion {
		cautiousLion(r, v.w64, v.g64, st.b64[0], lr, wd)
		return
	}
	cautiousAdamW(r, v.w64, v.g64, st.b64[0], st.b64[1], st.step, lr, wd)
}

func cautiousAdamW[T Float](r *cautiousRule, p, g, m, v []T, step int64, lr, wd float64) {
	t := float64(step)
	size := lr
	if r.correct {
		size = lr * math.Sqrt(1-math.Pow(r.beta2, t)) / (1 - math.Pow(r.beta1, t))
	}
	b1, omb1, b2, omb2 := T(r.beta1), T(1-r.beta1), T(r.beta2), T(1-r.beta2)
	nnz := 0
	for i := range p {
		gi := g[i]
		m[i] = m[i]*b1 + omb1*gi
		v[i] = v[i]*b2 + omb2*gi*gi
		if m[i]*gi > 0 {
			nnz++
		}
	}
	s, eps, sizeT, lrwd := T(cautiousScale(nnz, len(p), r.meanMask)), T(r.eps), T(size), T(lr*wd)
	for i := range p {
		pi := p[i]
		if wd != 0 {
			pi -= lrwd * pi
		}
		if m[i]*g[i] > 0 {
			pi -= sizeT * ((m[i] * s) / (sqrt(v[i]) + eps))
		}
		p[i] = pi
		g[i] = 0
	}
}

func cautiousLion[T Float](r *cautiousRule, p, g, m []T, lr, wd float64) {
	b1, omb1, b2, omb2 := T(r.beta1), T(1-r.beta1), T(r.beta2), T(1-r.beta2)
	nnz := 0
	for i := range p {
		if sign(m[i]*b1+omb1*g[i])*g[i] > 0 {
			nnz++
		}
	}
	step, shrink := T(lr*cautiousScale(nnz, len(p), r.meanMask)), T(1-lr*wd)
	for i := range p {
		gi := g[i]
		u := sign(m[i]*b1 + omb1*gi)
		pi := p[i] * shrink
		if u*gi > 0 {
			pi -= step * u
		}
		p[i] = pi
		m[i] = m[i]*b2 + omb2*gi
		g[i] = 0
	}
}
