package solvers

// NewOptimisticAMSGrad returns OPT-AMSGrad (Wang, Li, Karimi & Li, "An Optimistic Acceleration of AMSGrad
// for Nonconvex Optimization", first circulated as "Optimistic Adaptive Acceleration for Optimization",
// arXiv 1903.01435, Algorithm 2 OPTIMISTIC-AMSGRAD). No code by the authors was found with the search
// tools, so this follows the paper's algorithm:
//
//	θ_t = β1·θ_{t−1} + (1−β1)·g_t;  v_t = β2·v_{t−1} + (1−β2)·g_t²;  v̂_t = max(v̂_{t−1}, v_t)
//	w_{t+½} = w_{t−½} − η·θ_t/√v̂_t
//	w_{t+1} = w_{t+½} − η·h_{t+1}/√v̂_t,   h_{t+1} = β1·θ_{t−1} + (1−β1)·m_{t+1}
//
// with v_0 = v̂_0 = eps·1 (the paper's initialisation; no bias correction, no eps in the denominator) and
// w_{½} = w_1 (the half iterate starts at the first weights). The gradient predictor m_{t+1} is the
// simplest one the paper evaluates, the last gradient m_{t+1} = g_t; then h_{t+1} = θ_t, so the state is
// θ, v, v̂ and the half iterate (4P). The weights hold w_t, where the next gradient is taken.
// Hyperparameters (defaults): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-8).
func NewOptimisticAMSGrad(opts ...Option) (*Optimizer, error) {
	return newOptimizer("optamsgrad", []hyperSpec{
		lrSpec(1e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999), {key: "eps", def: 1e-8, check: positive},
	}, opts)
}

type optAMSGradRule struct{ beta1, beta2, eps float64 }

func init() {
	ruleFactories["optamsgrad"] = func(c *config) (rule, error) {
		return &optAMSGradRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps")}, nil
	}
	registerOptimizer("optamsgrad", NewOptimisticAMSGrad)
}

func (r *optAMSGradRule) bufferNames() []string {
	return []string{"exp_avg", "exp_avg_sq", "max_exp_avg_sq", "half_iterate"}
}
func (r *optAMSGradRule) bufferInit(i int) float64 {
	if i == 1 || i == 2 {
		return r.eps
	}
	return 0
}
func (r *optAMSGradRule) coefs(st *paramState, lr, wd float64, c *coefs) {
	first := 0.0
	if st.step == 1 {
		first = 1
	}
	*c = coefs{lr, r.beta1, 1 - r.beta1, r.beta2, 1 - r.beta2, first}
}
func (r *optAMSGradRule) run32(a *kernelArgs[float32], lo, hi int) { optAMSGradKernel(a, lo, hi) }
func (r *optAMSGradRule) run64(a *kernelArgs[float64], lo, hi int) { optAMSGradKernel(a, lo, hi) }

func optAMSGradKernel[T Float](a *kernelArgs[T], lo, hi int) {
	lr, b1, omb1, b2, omb2 := T(a.c[0]), T(a.c[1]), T(a.c[2]), T(a.c[3]), T(a.c[4])
	first := a.c[5] != 0
	p := a.p[lo:hi]
	n := len(p)
	g, m, v, vmax, half := a.g[lo:hi][:n], a.b[0][lo:hi][:n], a.b[1][lo:hi][:n], a.b[2][lo:hi][:n], a.b[3][lo:hi][:n]
	for i := range p {
		if first {
			half[i] = p[i]
		}
		gi := g[i]
		m[i] = m[i]*b1 + omb1*gi
		v[i] = v[i]*b2 + omb2*gi*gi
		vmax[i] = max(vmax[i], v[i])
		step := lr * (m[i] / sqrt(vmax[i]))
		h := half[i] - step
		half[i] = h
		p[i] = h - step
		g[i] = 0
	}
}
