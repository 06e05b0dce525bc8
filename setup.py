"""Build the compiled modules; everything else is declared in pyproject.toml."""
from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("resolver.dnssec._fastverify", ["resolver/dnssec/_fastverify.pyx"]),
            Extension("resolver.resolve._fastcache", ["resolver/resolve/_fastcache.pyx"]),
            Extension("resolver.forensic._fastlog", ["resolver/forensic/_fastlog.pyx"]),
            Extension("resolver.admission", ["resolver/admission.pyx"]),
            Extension("resolver._fastpath", ["resolver/_fastpath.pyx"]),
        ],
        compiler_directives={"language_level": "3"},
    ),
)
