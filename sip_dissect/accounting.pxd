# generated from sip_dissect/accounting.py by native/pxdgen.py at build time: edit the .py
from sip_dissect.transaction cimport Transaction
