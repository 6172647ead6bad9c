// Hierarchical interaction regression, weights integrated out (bayesmoe's collapsed
// InteractionRegression with its default priors): y = [1, X, X_int] beta + e,
// intercept ~ N(m0, s0), beta_base ~ N(0, tau_base), beta_interaction ~ N(0, tau_int),
// tau_* ~ HalfCauchy(s_y), sigma ~ HalfNormal(s_y). The likelihood is the Gaussian
// marginal of y given (tau_base, tau_int, sigma), from the sufficient statistics.
data {
  int<lower=1> n;
  int<lower=1> p;          // base features
  int<lower=0> q;          // interactions
  matrix[1 + p + q, 1 + p + q] xtx;
  vector[1 + p + q] xty;
  real yty;
  real m0;
  real<lower=0> s0;
  real<lower=0> s_y;
}
transformed data {
  int d = 1 + p + q;
  vector[d] prior_mean = rep_vector(0, d);
  prior_mean[1] = m0;
}
parameters {
  real<lower=0> tau_base;
  real<lower=0> tau_interaction;
  real<lower=0> sigma;
}
model {
  vector[d] prec;
  prec[1] = 1 / square(s0);
  prec[2:(1 + p)] = rep_vector(1 / square(tau_base), p);
  prec[(2 + p):d] = rep_vector(1 / square(tau_interaction), q);
  real iv = 1 / square(sigma);
  matrix[d, d] L = cholesky_decompose(add_diag(xtx * iv, prec));
  vector[d] u = mdivide_left_tri_low(L, prec .* prior_mean + xty * iv);
  real quad = yty * iv + dot_product(prec, square(prior_mean)) - dot_self(u);
  target += -n * log(sigma) + 0.5 * sum(log(prec)) - sum(log(diagonal(L))) - 0.5 * quad;
  tau_base ~ cauchy(0, s_y);
  tau_interaction ~ cauchy(0, s_y);
  sigma ~ normal(0, s_y);
}
