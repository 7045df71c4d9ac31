"""Query/Retrieve over a folder of DICOM files: an SQLite index, PS3.4 C.2.2.2 matching,
identifiers into SQL, and the C-FIND / C-GET / C-MOVE handlers of ``dicombus qrscp``."""
