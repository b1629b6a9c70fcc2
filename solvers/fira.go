package solvers

import "math"

// NewFira returns Fira (Chen et al., "Fira: Can We Achieve Full-rank Training of LLMs Under Low-rank
// Constraint?"), following the authors' code xichen-fy/Fira (optimizer_torch/fira_adamw.py with
// optimizer_torch/gradient_projection.py). It keeps GaLore's state exactly (see NewGaLore: projector,
// low-rank Adam moments, same refresh every update_proj_gap steps, same layout mapping) and adds the
// gradient outside the subspace, scaled. For a 2-D parameter at step t:
//
//	R = Pᵀ·G (or G·Q);  m, v, N = m/(√v + ε) as GaLore
//	φ_j = ‖N_j‖ / (‖R_j‖ + 1e-8)          one factor per vector along the projected (rank) axis:
//	                                       per column j of R when projecting from the left (R is r×cols),
//	                                       per row when projecting from the right (R is rows×r)
//	S = (G − α·P·R) ⊙ φ                   (φ broadcast along the projected axis)
//	norm-growth limiter (γ = 1.01): from the second step on,
//	    ℓ = max(‖S‖/(s_prev + 1e-8), γ)/γ;  S ← S/ℓ;  s_prev ← ‖S_before‖/ℓ;   at the first step s_prev = ‖S‖
//	θ ← θ − η·(√(1−β2ᵗ)/(1−β1ᵗ))·(α·P·N + S);   θ ← θ − η·λ·θ
//
// Read from the code, where it differs from the paper's summary: the residual subtracts the SCALED
// projection α·P·Pᵀ·G (the reference computes it with project_back, which multiplies by α), the factor φ
// is per row/column of the low-rank matrices (the reference's torch.norm(·, dim=norm_dim)), and the
// Adam bias correction multiplies the residual too (it is in step_size). In the reference's (out, in)
// layout the factor is per output row; in gradlab's (in, out) layout that is per column when projecting
// from the left — the same numbers, transposed. Parameters that are not 2-D get GaLore's AdamW.
//
// Hyperparameters (defaults): as NewGaLore (lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-6, weight_decay 0,
// rank 128, update_proj_gap 200, scale (α) 0.25, channel_first false). The limiter's γ = 1.01 is fixed
// as in the reference. State: GaLore's, plus two float64 scalars per matrix (the previous residual norm
// and whether there is one).
func NewFira(opts ...Option) (*GaLore, error) {
	s, err := newMxSolver("fira", galoreSpecs(1e-6, 0.25), opts, func(c *config) (mxAlgo, error) { return newGaloreAlgo(c, true), nil })
	if err != nil {
		return nil, err
	}
	return &GaLore{s}, nil
}

func init() {
	register("fira", func(opts ...Option) (Solver, error) { return NewFira(opts...) })
}

// firaGamma is the reference's norm-growth limit.
const firaGamma = 1.01

// firaResidual adds Fira's scaled, limited residual to U (which holds α·P·N).
func firaResidual[T Float](a *galoreAlgo, sc *galoreScratch[T], g, P, R, N, U []T, rows, cols, r int, left bool, st *mxState) {
	n := len(g)
	sc.sub = growSlice(sc.sub, n)
	S := sc.sub[:n]
	lowRankBack(P, R, S, rows, cols, r, left, T(a.scale), 0) // α·P·R
	// φ per vector along the rank axis
	nphi := rows
	if left {
		nphi = cols
	}
	sc.phi = growSlice(sc.phi, nphi)
	phi := sc.phi[:nphi]
	for k := range phi {
		var sn, sr float64
		for c := 0; c < r; c++ {
			var idx int
			if left {
				idx = c*cols + k
			} else {
				idx = k*r + c
			}
			sn += float64(N[idx]) * float64(N[idx])
			sr += float64(R[idx]) * float64(R[idx])
		}
		phi[k] = T(math.Sqrt(sn)) / (T(math.Sqrt(sr)) + 1e-8)
	}
	ss := 0.0
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			k := i
			if left {
				k = j
			}
			x := (g[i*cols+j] - S[i*cols+j]) * phi[k]
			S[i*cols+j] = x
			ss += float64(x) * float64(x)
		}
	}
	norm := math.Sqrt(ss)
	if st.scal[1] != 0 {
		lim := math.Max(norm/(st.scal[0]+1e-8), firaGamma) / firaGamma
		L := T(lim)
		for i := range S {
			S[i] /= L
		}
		st.scal[0] = norm / lim
	} else {
		st.scal[0], st.scal[1] = norm, 1
	}
	for i := range U {
		U[i] += S[i]
	}
}
