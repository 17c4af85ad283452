"""Study and teach with the book (issue 17): practice items made from the book's own structure (mine → quiz →
grade), a conversation store that outlives the page (history), and the teacher's aggregates (teacher).

Nothing here imports streamlit: the pages in pages/ are the only Streamlit code.
"""
