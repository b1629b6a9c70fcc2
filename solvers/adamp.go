package solvers

import (
	"math"

	"gorgonia.org/tensor"
)

// Layout of weight tensors. Gorgonia computes y = x·W with W stored (in, out): the output units are the
// LAST axis. PyTorch stores Linear and conv weights (out, in, ...): the output units are the FIRST axis.
// Methods whose rule depends on which axis indexes output units (AdamP/SGDP's channel view, Muon's
// fan-out/fan-in scaling) follow gradlab's layout by default; set the flag "channel_first" for tensors in
// PyTorch's layout.

// adampSpecs are the projection hyperparameters of AdamP and SGDP (Heo et al.): delta (0.1), wd_ratio (0.1),
// eps (1e-8), channel_first (false: output units on the last axis, Gorgonia's layout).
func projectionSpecs() []hyperSpec {
	return []hyperSpec{
		{key: "delta", def: 0.1, check: nonNegative},
		{key: "wd_ratio", def: 0.1, check: closedUnit},
		epsSpec(1e-8),
		flagSpec("channel_first", false),
		flagSpec("nesterov", false),
		wdSpec(0),
	}
}

// projector removes the radial component of an update on scale-invariant weights (Heo et al., "AdamP:
// Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights", Algorithm 1-2, as
// clovaai/AdamP): for the channel view (one row per output unit) and then the layer view (one row), if every
// row's |cos(g_i, p_i)| is below delta/sqrt(row length), the update u loses its component along each p_i
// and weight decay is scaled by wd_ratio. It keeps its scratch between steps.
type projector struct {
	delta, wdRatio, eps float64
	channelFirst        bool
	gn, pn, dot         []float64
}

func (pr *projector) grow(rows int) {
	if cap(pr.gn) < rows {
		pr.gn, pr.pn, pr.dot = make([]float64, rows), make([]float64, rows), make([]float64, rows)
	}
	pr.gn, pr.pn, pr.dot = pr.gn[:rows], pr.pn[:rows], pr.dot[:rows]
}

// project projects u in place for a parameter p of the given shape with raw gradient g and returns the
// weight-decay ratio (1 when no view projected).
func project[T Float](pr *projector, p, g, u []T, shape tensor.Shape) float64 {
	if shape.Dims() < 2 {
		return 1
	}
	n := len(p)
	axis := shape.Dims() - 1
	if pr.channelFirst {
		axis = 0
	}
	for _, rows := range []int{shape[axis], 1} {
		rowLen := n / rows
		first := pr.channelFirst || rows == 1
		row := func(k int) int {
			if first {
				return k / rowLen
			}
			return k % rows
		}
		pr.grow(rows)
		clear(pr.gn)
		clear(pr.pn)
		clear(pr.dot)
		for k := 0; k < n; k++ {
			r := row(k)
			gk, pk := float64(g[k]), float64(p[k])
			pr.gn[r] += gk * gk
			pr.pn[r] += pk * pk
			pr.dot[r] += gk * pk
		}
		maxCos := 0.0
		for r := range pr.gn {
			gn, pn := math.Sqrt(pr.gn[r]), math.Sqrt(pr.pn[r])
			pr.pn[r] = pn
			c := math.Abs(pr.dot[r]) / (math.Max(gn, pr.eps) * math.Max(pn, pr.eps))
			maxCos = math.Max(maxCos, c)
		}
		if !(maxCos < pr.delta/math.Sqrt(float64(rowLen))) {
			continue
		}
		// u_i ← u_i − p̂_i·(p̂_i·u_i), p̂_i = p_i/(‖p_i‖ + eps)
		clear(pr.dot)
		for k := 0; k < n; k++ {
			r := row(k)
			pr.dot[r] += float64(p[k]) / (pr.pn[r] + pr.eps) * float64(u[k])
		}
		for k := 0; k < n; k++ {
			r := row(k)
			pHat := T(float64(p[k]) / (pr.pn[r] + pr.eps))
			u[k] -= pHat * T(pr.dot[r])
		}
		return pr.wdRatio
	}
	return 1
}

func newProjector(c *config) projector {
	return projector{delta: c.f("delta"), wdRatio: c.f("wd_ratio"), eps: c.f("eps"), channelFirst: c.b("channel_first")}
}

// NewAdamP returns AdamP (Heo et al., "AdamP: Slowing Down the Slowdown for Momentum Optimizers on
// Scale-invariant Weights") as clovaai/AdamP: Adam's moments (no decay in the gradient), the update
// u = m/den (or (β1·m + (1−β1)·g)/den with nesterov), den = sqrt(v)/sqrt(bc2) + eps, projected on tensors
// of 2 or more dimensions (see projector); then p ← p·(1 − lr·wd·wd_ratio′) and p ← p − (lr/bc1)·u.
// Hyperparameters (defaults): lr (1e-3), beta1 (0.9), beta2 (0.999), eps (1e-8), weight_decay (0),
// delta (0.1), wd_ratio (0.1), nesterov (false), channel_first (false; see the layout note above).
func NewAdamP(opts ...Option) (*Optimizer, error) {
	return newOptimizer("adamp", append([]hyperSpec{lrSpec(1e-3), betaSpec("beta1", 0.9), betaSpec("beta2", 0.999)}, projectionSpecs()...), opts)
}

type adampRule struct {
	beta1, beta2, eps float64
	nesterov          bool
	proj              projector
	u32               []float32
	u64               []float64
}

func init() {
	ruleFactories["adamp"] = func(c *config) (rule, error) {
		return &adampRule{beta1: c.f("beta1"), beta2: c.f("beta2"), eps: c.f("eps"), nesterov: c.b("nesterov"), proj: newProjector(c)}, nil
	}
	registerOptimizer("adamp", NewAdamP)
	ruleFactories["sgdp"] = func(c *config) (rule, error) {
		r := &sgdpRule{mu: c.f("momentum"), damp: c.f("dampening"), nesterov: c.b("nesterov"), proj: newProjector(c)}
		return r, nil
	}
	registerOptimizer("sgdp", NewSGDP)
}

func (r *adampRule) bufferNames() []string  { return []string{"exp_avg", "exp_avg_sq"} }
func (r *adampRule) bufferInit(int) float64 { return 0 }
func (r *adampRule) update32(v *view, st *paramState, lr, wd float64) {
	r.u32 = growSlice(r.u32, len(v.w32))
	adampUpdate(r, v.w32, v.g32, st.b32[0], st.b32[1], r.u32, v.shape, st.step, lr, wd)
}
func (r *adampRule) update64(v *view, st *paramState, lr, wd float64) {
	r.u64 = growSlice(r.u64, len(v.w64))
	adampUpdate(r, v.w64, v.g64, st.b64[0], st.b64[1], r.u64, v.shape, st.step, lr, wd)
}

func growSlice[T Float](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func adampUpdate[T Float](r *adampRule, p, g, m, v, u []T, shape tensor.Shape, step int64, lr, wd float64) {
	t := float64(step)
	bc1, bc2 := 1-math.Pow(r.beta1, t), 1-math.Pow(r.beta2, t)
	b1, b2, ibc2s, eps := T(r.beta1), T(r.beta2), T(1/math.Sqrt(bc2)), T(r.eps)
	for i := range p {
		gi := g[i]
		m[i] = m[i]*b1 + (1-b1)*gi
		v[i] = v[i]*b2 + (1-b2)*gi*gi
		den := sqrt(v[i])*ibc2s + eps
		if r.nesterov {
			u[i] = (b1*m[i] + (1-b1)*gi) / den
		} else {
			u[i] = m[i] / den
		}
	}
	wr := project(&r.proj, p, g, u, shape)
	shrink, size := T(1-lr*wd*wr), T(lr/bc1)
	for i := range p {
		pi := p[i]
		if wd > 0 {
			pi *= shrink
		}
		p[i] = pi - size*u[i]
		g[i] = 0
	}
}

// NewSGDP returns SGDP (Heo et al., as clovaai/AdamP sgdp.py): b ← μ·b + (1 − dampening)·g (dampening
// applies from the first step, unlike torch SGD), d = g + μ·b (nesterov) or b, projected as AdamP (without
// nesterov the momentum buffer itself is projected, as the reference does in place), then
// p ← p·(1 − lr·wd·wd_ratio′/(1 − μ)) and p ← p − lr·d. Hyperparameters (defaults): lr (0.1; the reference
// requires one), momentum (0), dampening (0), weight_decay (0), nesterov (false), eps (1e-8), delta (0.1),
// wd_ratio (0.1), channel_first (false).
func NewSGDP(opts ...Option) (*Optimizer, error) {
	return newOptimizer("sgdp", append([]hyperSpec{lrSpec(0.1), betaSpec("momentum", 0), {key: "dampening", def: 0, check: closedUnit}}, projectionSpecs()...), opts)
}

type sgdpRule struct {
	mu, damp float64
	nesterov bool
	proj     projector
	d32      []float32
	d64      []float64
}

func (r *sgdpRule) bufferNames() []string  { return []string{"momentum"} }
func (r *sgdpRule) bufferInit(int) float64 { return 0 }
func (r *sgdpRule) update32(v *view, st *paramState, lr, wd float64) {
	r.d32 = growSlice(r.d32, len(v.w32))
	sgdpUpdate(r, v.w32, v.g32, st.b32[0], r.d32, v.shape, lr, wd)
}
func (r *sgdpRule) update64(v *view, st *paramState, lr, wd float64) {
	r.d64 = growSlice(r.d64, len(v.w64))
	sgdpUpdate(r, v.w64, v.g64, st.b64[0], r.d64, v.shape, lr, wd)
}

func sgdpUpdate[T Float](r *sgdpRule, p, g, b, scratch []T, shape tensor.Shape, lr, wd float64) {
	mu, damp1 := T(r.mu), T(1-r.damp)
	d := b // without nesterov the buffer is the update, projected in place
	if r.nesterov {
		d = scratch
	}
	for i := range p {
		b[i] = b[i]*mu + damp1*g[i]
		if r.nesterov {
			d[i] = g[i] + mu*b[i]
		}
	}
	wr := project(&r.proj, p, g, d, shape)
	shrink, lrT := T(1-lr*wd*wr/(1-r.mu)), T(lr)
	for i := range p {
		pi := p[i]
		if wd != 0 {
			pi *= shrink
		}
		p[i] = pi - lrT*d[i]
		g[i] = 0
	}
}
