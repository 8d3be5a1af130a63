# generated from sip_dissect/cdr.py by native/pxdgen.py at build time: edit the .py
from sip_dissect.dialog cimport Call
