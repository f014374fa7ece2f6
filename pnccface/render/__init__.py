"""Differentiable rendering in JAX: rasterizer, SH shading, PNCC images."""

from pnccface.render.rasterizer import default_method
from pnccface.render.rasterizer import interpolate
from pnccface.render.rasterizer import METHODS
from pnccface.render.rasterizer import Raster
from pnccface.render.rasterizer import rasterize
from pnccface.render.renderer import project_landmarks
from pnccface.render.renderer import render_pncc
from pnccface.render.renderer import render_shaded
from pnccface.render.renderer import screen_normals
from pnccface.render.shading import ambient_sh_coefficients
from pnccface.render.shading import directional_sh_coefficients
from pnccface.render.shading import NUM_SH_COEFFICIENTS
from pnccface.render.shading import sh_basis
from pnccface.render.shading import sh_shading
from pnccface.render.shading import vertex_normals
